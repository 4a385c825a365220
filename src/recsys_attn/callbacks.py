"""Lightning callbacks of our own."""

from __future__ import annotations

import statistics
import time
from typing import Any

import lightning as L


class EpochTimer(L.Callback):
    """Wall-clock seconds of each training epoch (training only, validation excluded)."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.durations.append(time.perf_counter() - self._start)
        pl_module.log("time/epoch_s", self.durations[-1], on_epoch=True, sync_dist=False, rank_zero_only=True)

    @property
    def median(self) -> float:
        return statistics.median(self.durations) if self.durations else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"durations": self.durations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.durations = list(state_dict.get("durations", []))
