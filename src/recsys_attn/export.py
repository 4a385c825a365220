"""Export a portable scorer: ``python -m recsys_attn.export ckpt_path=<file> [format=onnx|torch] [k=10]``.

The command alone: its work is ``recsys_attn.jobs.export``, imported when a run starts, so ``--help`` answers
without importing torch or Lightning.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys_attn.jobs import run_job
from recsys_attn.run.entry import CONF_DIR, run_entry_point


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point: export (the data of the checkpoint's own run unless ``data=...``), say what went where."""
    run_job("export", cfg)


def main() -> None:
    """Console script and ``python -m`` entry: user errors exit with one line naming the key."""
    run_entry_point(hydra_main)


if __name__ == "__main__":
    main()
