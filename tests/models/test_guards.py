"""NonFiniteLossGuard: a diverged loss stops training with the step it diverged at."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from recsys_attn.errors import TrainingError
from recsys_attn.models.guards import NonFiniteLossGuard


def trainer_at(step: int) -> Any:
    return SimpleNamespace(global_step=step, current_epoch=0, precision="32-true", log_every_n_steps=50)


def test_on_the_cpu_the_first_non_finite_loss_stops_training_naming_its_step() -> None:
    guard, module = NonFiniteLossGuard(), SimpleNamespace(settings=SimpleNamespace(lr=0.5))
    for step in range(3):
        guard.on_train_batch_end(trainer_at(step), module, {"loss": torch.tensor(1.0)}, None, step)  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match=r"at global step 3 \(epoch 0\).*model\.lr=0\.5"):
        guard.on_train_batch_end(trainer_at(3), module, torch.tensor(float("nan")), None, 3)  # type: ignore[arg-type]


def test_finite_losses_and_outputs_without_a_loss_pass() -> None:
    guard, module = NonFiniteLossGuard(), SimpleNamespace()
    guard.on_train_batch_end(trainer_at(0), module, {"loss": torch.tensor(2.0, requires_grad=True)}, None, 0)  # type: ignore[arg-type]
    guard.on_train_batch_end(trainer_at(1), module, None, None, 1)  # type: ignore[arg-type]
    guard.on_train_epoch_end(trainer_at(1), module)  # type: ignore[arg-type]


def test_on_a_device_the_flag_is_read_each_time_a_multiple_of_log_every_n_steps_is_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With several optimiser steps a call (``data.steps_per_call``) the global step jumps by k: here 8 from 6, so it
    never lands on a multiple of 20, and the read must come on the first call past each one."""
    guard, module, read_at = NonFiniteLossGuard(), SimpleNamespace(), []
    monkeypatch.setattr(guard, "_check", lambda trainer, _module: read_at.append(trainer.global_step))
    for step in range(6, 90, 8):  # a device loss: "meta" holds no values, so nothing waits and nothing is read here
        trainer = SimpleNamespace(global_step=step, current_epoch=0, precision="32-true", log_every_n_steps=20)
        guard.on_train_batch_end(trainer, module, torch.tensor(1.0, device="meta"), None, step)  # type: ignore[arg-type]
    assert read_at == [22, 46, 62, 86]  # past 20, 40, 60 and 80: each once
