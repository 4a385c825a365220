"""One progress line per epoch, logged at INFO (console and ``train.log``).

``epoch 12/200 · train 41.3 s · val/ndcg@10 0.1234 (best 0.1301 @ epoch 9) · ETA 2h11m to max_epochs``
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``2h11m`` (to the nearest minute from an hour on), ``4m05s`` or ``41s``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(seconds, 0.0)
    if seconds >= 3600 - 30:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours}h{minutes:02d}m"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _fitting(trainer: L.Trainer) -> bool:
    """Inside ``fit`` and past the sanity check (not a ``validate``/``test`` call after it)."""
    return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking


class EpochProgress(L.Callback):
    """Log an epoch's training time, the monitored metric with its best so far, and the ETA to ``max_epochs``.

    The ETA is the mean epoch time of this process (training and validation) times the epochs left.
    The best value and its epoch are saved in checkpoints, so they survive a resume. Rank zero only.

    Args:
        monitor: the validation metric shown, e.g. ``val/ndcg@10``.
        mode: ``max`` or ``min``: which way is better for ``monitor``.
        clock: seconds as a float (``time.perf_counter``; a fake one in tests).
    """

    def __init__(
        self, monitor: str = "val/ndcg@10", mode: str = "max", clock: Callable[[], float] = time.perf_counter
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode: {mode!r} is not one of max, min")
        self.monitor = monitor
        self.mode = mode
        self.clock = clock
        self.best: float | None = None
        self.best_epoch = 0  # 1-based, as shown
        self.epoch_seconds: list[float] = []
        self._epoch_start = 0.0
        self._train_end: float | None = None
        self._validated = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self.clock()
        self._train_end = None
        self._validated = False

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not _fitting(trainer) or self._train_end is not None:
            return
        if pl_module.device.type == "cuda":  # kernels run asynchronously: wait for the training ones
            torch.cuda.synchronize(pl_module.device)
        self._train_end = self.clock()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if not _fitting(trainer) or value is None:
            return
        self._validated = True
        current = float(value)
        better = self.best is None or (current > self.best if self.mode == "max" else current < self.best)
        if better and math.isfinite(current):
            self.best, self.best_epoch = current, trainer.current_epoch + 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates inside the training epoch, so this hook comes after the epoch's validation.
        end = self.clock()
        self.epoch_seconds.append(end - self._epoch_start)
        if not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.monitor) if self._validated else None
        train_s = (end if self._train_end is None else self._train_end) - self._epoch_start
        log.info(self.line(trainer.current_epoch + 1, trainer.max_epochs, train_s, value))

    def line(self, epoch: int, max_epochs: int | None, train_s: float, value: Any) -> str:
        """The line after ``epoch`` (1-based) epochs; ``value``: the monitored metric, None when not validated."""
        if max_epochs is not None and max_epochs < 0:  # Lightning's "no limit"
            max_epochs = None
        parts = [f"epoch {epoch}/{max_epochs or '∞'}", f"train {train_s:.1f} s"]
        shown = "not validated" if value is None else f"{float(value):.4f}"
        best = "" if self.best is None else f" (best {self.best:.4f} @ epoch {self.best_epoch})"
        parts.append(f"{self.monitor} {shown}{best}")
        if max_epochs and self.epoch_seconds:
            mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
            parts.append(f"ETA {format_duration(mean * max(max_epochs - epoch, 0))} to max_epochs")
        return " · ".join(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.best_epoch = int(state_dict.get("best_epoch", 0))
