"""Lightning callbacks of our own."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class EpochTimer(L.Callback):
    """Wall-clock seconds of each training epoch (training only, validation excluded)."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":  # kernels run asynchronously: wait for the epoch's last ones
            torch.cuda.synchronize(pl_module.device)
        self.durations.append(time.perf_counter() - self._start)
        pl_module.log("time/epoch_s", self.durations[-1], on_epoch=True, sync_dist=False, rank_zero_only=True)

    @property
    def median(self) -> float:
        return statistics.median(self.durations) if self.durations else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"durations": self.durations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.durations = list(state_dict.get("durations", []))


class ResumableCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that keeps tracking the best model when a run resumes into a new run directory.

    Lightning drops the best score and path when ``dirpath`` changed since the checkpoint was written,
    so a resumed run would test its own best instead of the overall best. Files of the earlier run are
    referenced, never deleted.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("dirpath") != self.dirpath:
            self.best_model_score = state_dict.get("best_model_score")
            self.best_model_path = state_dict.get("best_model_path", "")
            self.best_k_models = dict(state_dict.get("best_k_models", {}))
            self.kth_best_model_path = state_dict.get("kth_best_model_path", "")
            self.kth_value = state_dict.get("kth_value", self.kth_value)

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self.dirpath is not None and Path(filepath).resolve().parent == Path(self.dirpath).resolve():
            super()._remove_checkpoint(trainer, filepath)
