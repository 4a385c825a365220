"""Off-policy evaluation: ``python -m recsys_attn.ope logged=<file> ckpt_path=<file> [policy=...]``.

Estimates the value of the target (the checkpoint's scores, turned into slates by ``policy``) from a log of
slates another policy served; writes ``ope.json`` and ``served_ctr.parquet`` into its run directory. The
estimators are defined in ``recsys_attn.serving.ope_estimators``.

The command alone: its work is ``recsys_attn.jobs.ope``, imported when a run starts, so ``--help`` answers
without importing torch or Lightning.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys_attn.jobs import run_job
from recsys_attn.run.entry import CONF_DIR, run_entry_point


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="ope")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point: estimate (the data of the checkpoint's own run unless ``data=...``), print the table."""
    run_job("ope", cfg)


def main() -> None:
    """Console script and ``python -m`` entry: user errors exit with one line naming the key."""
    run_entry_point(hydra_main)


if __name__ == "__main__":
    main()
