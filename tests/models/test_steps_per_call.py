"""``data.steps_per_call``: several optimiser steps a call of the training step, trained exactly as one a call."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor

from recsys_attn.data.batches import TrainBatches
from recsys_attn.errors import ConfigError
from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.sequential import SequentialRec
from tests.conftest import quiet_trainer, toy_datamodule
from tests.models.test_manual_optimization import LINES, BackwardCounter, twins


def fit(
    tmp_path: Path, model: SequentialRec, per_call: int, loader: str = "device", **trainer_args: object
) -> tuple[int, int]:
    """Fit ``model`` (two epochs unless told) on the toy log at ``per_call`` batches a call; (optimiser steps, calls an
    epoch)."""
    dm = toy_datamodule(tmp_path, LINES, model.sample_spec, batch_size=4, steps_per_call=per_call, loader=loader)
    args: dict[str, object] = {"max_epochs": 2, "limit_val_batches": 0, **trainer_args}
    trainer = quiet_trainer(tmp_path, **args)
    trainer.fit(model, datamodule=dm)
    return trainer.global_step, int(trainer.num_training_batches)


def assert_same_weights(a: SequentialRec, b: SequentialRec) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert a.lr_schedulers().get_last_lr() == b.lr_schedulers().get_last_lr()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("cls", "per_call", "loader"),
    [
        (SASRec, 2, "device"),  # 3 batches an epoch: calls of 2 and 1
        (SASRec, 4, "dataloader"),  # the worker loader's path: one call holds the whole epoch
        (BERT4Rec, 4, "device"),  # cloze: 6 batches (last-item copies), calls of 4 and 2
    ],
)
def test_several_steps_a_call_train_exactly_as_one_a_call(
    tmp_path: Path, cls: type[SequentialRec], per_call: int, loader: str
) -> None:
    single, bundled = twins(cls)  # warm-up then linear decay: the schedule must span the same optimiser steps
    steps, calls = fit(tmp_path / "single", single, 1, loader)
    bundled_steps, bundled_calls = fit(tmp_path / "bundled", bundled, per_call, loader)
    assert bundled_steps == steps == 2 * calls  # every batch one optimiser step, counted once
    assert bundled_calls == -(-calls // per_call)  # Lightning's loop ran once a call
    assert_same_weights(single, bundled)  # the same batches, draws and steps in the same order: bit for bit
    assert bundled.lr_schedulers().get_last_lr() == [0.0, 0.0]  # type: ignore[union-attr]  # decayed to 0 at the end


def test_lightnings_hooked_step_also_takes_several_steps_a_call(tmp_path: Path) -> None:
    single, bundled = twins(SASRec)
    counter = BackwardCounter()  # listened: Lightning's manual backward and step, with their hooks
    fit(tmp_path / "single", single, 1)
    steps, _ = fit(tmp_path / "bundled", bundled, 2, callbacks=[counter])
    assert not bundled._lean_step and counter.calls == steps == 6
    assert_same_weights(single, bundled)


def test_max_steps_counts_optimiser_steps_not_calls(tmp_path: Path) -> None:
    single, bundled = twins(SASRec)
    fit(tmp_path / "single", single, 1, max_steps=4)
    steps, _ = fit(tmp_path / "bundled", bundled, 3, max_steps=4)  # the second call stops after its first step
    assert steps == 4
    for (name, p), q in zip(single.named_parameters(), bundled.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_a_fit_bounded_by_max_steps_alone_schedules_over_them(tmp_path: Path) -> None:
    """No epoch limit: the schedule spans ``trainer.max_steps`` optimiser steps, as with one batch a call."""
    single, bundled = twins(SASRec)
    fit(tmp_path / "single", single, 1, max_epochs=-1, max_steps=5)
    steps, _ = fit(tmp_path / "bundled", bundled, 2, max_epochs=-1, max_steps=5)  # calls of 2, 1 | 2 ...: cut at 5
    assert steps == 5
    assert_same_weights(single, bundled)  # the learning rate decayed to 0 at step 5 in both
    assert bundled.lr_schedulers().get_last_lr() == [0.0, 0.0]  # type: ignore[union-attr]


def test_the_step_loss_is_logged_once_a_call_that_lightning_records(tmp_path: Path) -> None:
    model = SASRec(14, hidden_size=8, num_blocks=1, max_len=6)
    losses: list[float] = []  # each optimiser step's loss as it would be logged, in order
    track_loss = model._track_loss

    def spy(loss: Tensor, positions: int | Tensor, log: bool) -> None:
        losses.append(float(loss))
        track_loss(loss, positions, log)

    model._track_loss = spy  # type: ignore[method-assign]
    dm = toy_datamodule(tmp_path, LINES, model.sample_spec, batch_size=4, steps_per_call=2)
    logger = CSVLogger(tmp_path, name="csv", version=0)
    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0, log_every_n_steps=2)
    trainer.loggers = [logger]
    trainer.fit(model, datamodule=dm)  # 3 batches an epoch: calls of steps (0, 1), (2), (3, 4), (5)
    with (tmp_path / "csv" / "version_0" / "metrics.csv").open() as f:
        logged = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    # Lightning records every second call (the 2nd and the 4th), not every second optimiser step (1, 3, 5): each
    # recorded value is the loss of its call's last step, not one left over from an earlier call
    assert trainer.num_training_batches == 2 and len(losses) == 6
    assert logged == pytest.approx([losses[2], losses[5]], rel=1e-6)


def test_lightnings_automatic_optimisation_cannot_take_several_steps_a_call(tmp_path: Path) -> None:
    model = SASRec(14, hidden_size=8, num_blocks=1, max_len=6)
    with pytest.raises(ConfigError, match=r"data.steps_per_call=2 .* trainer.gradient_clip_val"):
        fit(tmp_path, model, 2, gradient_clip_val=1.0)


def test_steps_per_call_below_one_fails_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.steps_per_call"):
        toy_datamodule(tmp_path, LINES, steps_per_call=0)


def test_several_processes_refuse_several_steps_a_call(tmp_path: Path) -> None:
    model = SASRec(14, hidden_size=8, num_blocks=1, max_len=6)
    dm = toy_datamodule(tmp_path, LINES, model.sample_spec, batch_size=4, steps_per_call=2)
    model.trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", strategy="ddp_spawn", devices=2)
    batches = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert isinstance(batches, TrainBatches) and len(batches.batches) == 2
    with pytest.raises(ConfigError, match=r"data\.steps_per_call=2 .* DDP .*2 processes"):
        model.training_step(batches, 0)
