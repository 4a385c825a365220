"""Progress logged at INFO (console and ``train.log``): the expected duration, then one line per epoch.

After the first batches: ``expected: about 41s per training epoch of 48 batches, 2h17m for 200 epochs (...)``;
after each epoch:
``epoch 12/200 · train 41.3 s · val/ndcg@10 0.1234 (best 0.1301 @ epoch 9) · val/hr@10 0.2100 · elapsed 8m22s ·
ETA 2h11m to max_epochs``
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
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
    """Log the expected duration early, then each epoch's time, validation metrics and the ETA to ``max_epochs``.

    The expected duration is measured on the first ``estimate_after`` training batches of this process
    (validation comes on top). The ETA is the mean epoch time of this process (training and validation)
    times the epochs left. The best value and its epoch are saved in checkpoints, so they survive a resume.
    Rank zero only.

    Args:
        monitor: the validation metric shown with its best so far, e.g. ``val/ndcg@10``.
        mode: ``max`` or ``min``: which way is better for ``monitor``.
        also: further validation metrics shown when logged, e.g. ``val/hr@10``.
        estimate_after: training batches timed before the expected duration is logged.
        clock: seconds as a float (``time.perf_counter``; a fake one in tests).
    """

    def __init__(
        self,
        monitor: str = "val/ndcg@10",
        mode: str = "max",
        also: Sequence[str] = ("val/hr@10",),
        estimate_after: int = 10,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode: {mode!r} is not one of max, min")
        if estimate_after < 1:
            raise ValueError(f"estimate_after: must be >= 1 (got {estimate_after})")
        self.monitor = monitor
        self.mode = mode
        self.also = [name for name in also if name != monitor]
        self.estimate_after = estimate_after
        self.clock = clock
        self.best: float | None = None
        self.best_epoch = 0  # 1-based, as shown
        self.epoch_seconds: list[float] = []
        self._epoch_start = 0.0
        self._train_end: float | None = None
        self._validated = False
        self._estimated = False
        self._after_first = 0.0

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self.clock()
        self._train_end = None
        self._validated = False

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._estimated:
            return
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            self._estimated = True
            return
        # The first batch carries the start-up (loader, first allocations, lazy initialisation): it is left
        # out of the rate, which the next ``estimate_after`` batches give.
        timed = batch_idx
        if batch_idx > 0 and timed < min(self.estimate_after, int(batches) - 1):
            return
        if pl_module.device.type == "cuda":  # kernels run asynchronously: wait for the timed ones
            torch.cuda.synchronize(pl_module.device)
        now = self.clock()
        if batch_idx == 0:
            self._after_first = now
            if int(batches) > 1:
                return
        self._estimated = True  # once per process: the first epoch run here
        if not trainer.is_global_zero:
            return
        per_batch = (now - self._after_first) / timed if timed else now - self._epoch_start
        epoch_s = per_batch * batches
        log.info(self.expected(epoch_s, int(batches), timed, trainer.max_epochs, trainer.current_epoch))

    def expected(self, epoch_s: float, batches: int, timed: int, max_epochs: int | None, done: int) -> str:
        """The expected-duration line: ``epoch_s`` per training epoch of ``batches``, ``done`` epochs already run."""
        head = f"expected: about {format_duration(epoch_s)} per training epoch of {batches} batches"
        note = (
            f"measured on {f'{timed} batches after the first' if timed else 'its only batch'}; "
            "validation comes on top, early stopping may end sooner; "
            "each epoch's line re-estimates"
        )
        if max_epochs is None or max_epochs < 0:
            return f"{head}, no epoch limit ({note})"
        left = max(max_epochs - done, 0)
        return f"{head}, {format_duration(epoch_s * left)} for {left} epoch{'' if left == 1 else 's'} ({note})"

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
        metrics = trainer.callback_metrics if self._validated else {}
        train_s = (end if self._train_end is None else self._train_end) - self._epoch_start
        log.info(self.line(trainer.current_epoch + 1, trainer.max_epochs, train_s, metrics.get(self.monitor), metrics))

    def line(
        self, epoch: int, max_epochs: int | None, train_s: float, value: Any, metrics: Mapping[str, Any] | None = None
    ) -> str:
        """The line after ``epoch`` (1-based) epochs.

        Args:
            value: the monitored metric, None when not validated.
            metrics: the validation metrics logged this epoch; those of ``also`` are shown.
        """
        if max_epochs is not None and max_epochs < 0:  # Lightning's "no limit"
            max_epochs = None
        parts = [f"epoch {epoch}/{max_epochs or '∞'}", f"train {train_s:.1f} s"]
        shown = "not validated" if value is None else f"{float(value):.4f}"
        best = "" if self.best is None else f" (best {self.best:.4f} @ epoch {self.best_epoch})"
        parts.append(f"{self.monitor} {shown}{best}")
        metrics = metrics or {}
        parts += [f"{name} {float(metrics[name]):.4f}" for name in self.also if name in metrics]
        if self.epoch_seconds:
            parts.append(f"elapsed {format_duration(sum(self.epoch_seconds))}")
        if max_epochs and self.epoch_seconds:
            parts.append(f"ETA {format_duration(self.epoch_estimate() * max(max_epochs - epoch, 0))} to max_epochs")
        return " · ".join(parts)

    def epoch_estimate(self) -> float:
        """Seconds an epoch takes now: the median of the last five epochs, the first (warm-up) left out once
        there are others."""
        recent = (self.epoch_seconds[1:] or self.epoch_seconds)[-5:]
        return statistics.median(recent) if recent else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.best_epoch = int(state_dict.get("best_epoch", 0))


class EpochBar(RichProgressBar):
    """Lightning's rich progress bar, numbering epochs as our lines do: ``epoch 5/5`` for the last of five.

    Lightning's own says ``Epoch 4/4`` there (the 0-based epoch over ``max_epochs - 1``).
    """

    UPDATE_S = 0.2
    """Seconds between two updates of the bar during training (and always at an epoch's last batch): Lightning's
    updates it, and reads its metrics (a wait for a GPU), after every batch, ~0.2 ms of a small step's host time
    (benchmarks/bench_overhead.py)."""

    _last_update = 0.0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        last = batch_idx + 1 == self.total_train_batches
        if now - self._last_update >= self.UPDATE_S or last:
            self._last_update = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        limit = f"/{max_epochs}" if max_epochs is not None and max_epochs >= 0 else ""
        description = f"epoch {current_epoch + 1}{limit}"
        return f"{description:{len(self.validation_description)}}"  # as wide as "Validation": no flicker
