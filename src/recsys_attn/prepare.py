"""Prepare a data set into the cache: ``python -m recsys_attn.prepare data=<name>``.

The command alone: its work is ``recsys_attn.jobs.prepare``, imported when a run starts, so ``--help`` answers
without importing torch or Lightning.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys_attn.jobs import run_job
from recsys_attn.run.entry import CONF_DIR, run_entry_point


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="prepare")
def hydra_main(cfg: DictConfig) -> None:
    """Entry point: prepare the data set and print a summary."""
    run_job("prepare", cfg)


def main() -> None:
    """Console script and ``python -m`` entry: user errors exit with one line naming the key."""
    run_entry_point(hydra_main)


if __name__ == "__main__":
    main()
