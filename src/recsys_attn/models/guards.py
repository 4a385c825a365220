"""A guard every training loop uses: a diverged loss stops training before it reaches a checkpoint."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from recsys_attn.errors import TrainingError


class NonFiniteLossGuard(L.Callback):
    """Stops training with a clear error as soon as the loss is NaN or infinite.

    On the CPU each step's loss is read as it ends (no wait there); on an accelerator the flag is accumulated on
    the device every step and read (one host sync) every ``log_every_n_steps`` and before each validation, so a
    diverged model never reaches a checkpoint. With several optimiser steps a call (``data.steps_per_call``) the loss
    it reads is the call's mean, and the step it names the call's last.
    """

    def __init__(self) -> None:
        self._first_bad: Tensor | int | None = None  # global step of the first non-finite loss ([] on a device)
        self._checked_block = 0  # global_step // log_every_n_steps at the last check on a device

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, Tensor):
            return
        if loss.device.type == "cpu":  # reading it costs no wait: the exact step, and no tensor work each step
            if not math.isfinite(loss.item()):
                self._first_bad = trainer.global_step
                self._check(trainer, pl_module)
            return
        step = torch.tensor(trainer.global_step, device=loss.device)  # []
        if not isinstance(self._first_bad, Tensor) or self._first_bad.device != loss.device:
            self._first_bad = torch.tensor(-1, device=loss.device)
        fresh = ~torch.isfinite(loss.detach()) & (self._first_bad < 0)  # []
        self._first_bad = torch.where(fresh, step, self._first_bad)
        block = trainer.global_step // max(int(getattr(trainer, "log_every_n_steps", 50)), 1)
        if block != self._checked_block:  # a multiple of log_every_n_steps reached (a call of k steps may pass it)
            self._checked_block = block
            self._check(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, pl_module)

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._first_bad is None or int(self._first_bad) < 0:
            return
        settings = getattr(pl_module, "settings", None)
        lr = getattr(settings, "lr", None)
        raise TrainingError(
            f"training diverged: the loss became non-finite (NaN or inf) at global step {int(self._first_bad)} "
            f"(epoch {trainer.current_epoch}); likely cause: a learning rate too high (model.lr={lr}) "
            f"or an overflow under trainer.precision={trainer.precision}; no checkpoint of this state was kept"
        )
