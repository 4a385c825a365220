"""Compare finished runs: ``python -m recsys_attn.compare runs=[<run dir>,<run dir>,...]`` (or a sweep dir).

Writes ``comparison.md``, ``comparison.csv`` and PNG plots into its run directory (``out_dir`` to choose):
each run's metrics with 95% bootstrap intervals, and each run against the first with a paired bootstrap test.
Runs are named by what differs between them (the model, the experiment, the settings that differ).

The command alone: its work is ``recsys_attn.jobs.compare``, imported when a run starts, so ``--help`` answers
without importing torch or Lightning.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys_attn.jobs import run_job
from recsys_attn.run.entry import CONF_DIR, run_entry_point


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="compare")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_job("compare", cfg)


def main() -> None:
    """Console script and ``python -m`` entry: user errors exit with one line naming the key."""
    run_entry_point(hydra_main)


if __name__ == "__main__":
    main()
