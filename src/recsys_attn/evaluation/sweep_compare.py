"""Hydra callback: after a multirun, compare its jobs (``comparison.md`` beside ``summary.csv``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from recsys_attn.evaluation.outputs import PER_USER_FILE
from recsys_attn.evaluation.report import compare_runs

log = logging.getLogger(__name__)


class SweepCompare(Callback):
    """Registered in ``conf/hydra/default.yaml``; jobs without ``per_user.parquet`` (failed, no test) are left out."""

    def __init__(self, split: str = "test", samples: int = 10_000, seed: int = 0) -> None:
        self.split, self.samples, self.seed = split, samples, seed
        self._sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(str(config.hydra.sweep.dir))  # resolved once: it holds a ${now:...} timestamp

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self._sweep_dir or Path(str(config.hydra.sweep.dir))
        if not any(sweep_dir.glob(f"*/{PER_USER_FILE}")):
            log.warning("no sweep comparison: no job of %s wrote %s", sweep_dir, PER_USER_FILE)
            return
        compare_runs([str(sweep_dir)], sweep_dir, self.split, self.samples, self.seed)
