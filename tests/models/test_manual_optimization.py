"""SequentialRec steps its optimiser itself (no Lightning closure) unless the trainer clips or accumulates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.optimiser_step import hooks_listened, lean_step_applies
from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.sequential import SequentialRec
from tests.conftest import quiet_trainer, toy_datamodule
from tests.tolerances import assert_close, tol

N_ITEMS = 14
LINES = [f"{u} {1 + (5 * u + 3 * j) % N_ITEMS}" for u in range(1, 13) for j in range(3 + u)]


def twins(cls: type[SequentialRec]) -> tuple[SequentialRec, SequentialRec]:
    torch.manual_seed(0)
    settings = {"hidden_size": 16, "num_blocks": 1, "max_len": 6, "lr": 1e-2, "warmup_steps": 3, "schedule": "linear"}
    a, b = cls(N_ITEMS, **settings), cls(N_ITEMS, **settings)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_our_optimiser_steps_train_as_lightnings_own(tmp_path: Path, cls: type[SequentialRec]) -> None:
    ours, lightnings = twins(cls)
    runs = {"ours": (ours, {}), "lightning": (lightnings, {"gradient_clip_val": 1e9})}  # a clip that never cuts
    for name, (model, extra) in runs.items():
        dm = toy_datamodule(tmp_path / name, LINES, model.sample_spec, batch_size=4)
        trainer = quiet_trainer(tmp_path / name, max_epochs=2, limit_val_batches=0, **extra)
        trainer.fit(model, datamodule=dm)
        assert model.automatic_optimization is (name == "lightning")
        assert trainer.global_step == 2 * trainer.num_training_batches  # every step counted, once
    rtol = tol(torch.float32, 1000 * 12)  # a small model's gradients, up to twelve steps of drift
    for (name, p), q in zip(ours.named_parameters(), lightnings.parameters(), strict=True):
        assert_close(p, q, rtol=rtol, atol=rtol * float(q.abs().max()), what=name)
    # the schedule stepped alike: warm-up over 3 steps, then linear decay to 0 at the last step
    assert ours.lr_schedulers().get_last_lr() == lightnings.lr_schedulers().get_last_lr()  # type: ignore[union-attr]


def test_a_module_outside_a_trainer_and_one_that_accumulates_use_lightnings_loop(tmp_path: Path) -> None:
    model = SASRec(N_ITEMS, hidden_size=16, num_blocks=1, max_len=6)
    assert model.automatic_optimization  # no trainer attached
    dm = toy_datamodule(tmp_path, LINES, model.sample_spec, batch_size=4)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, accumulate_grad_batches=3)
    trainer.fit(model, datamodule=dm)
    assert model.automatic_optimization and trainer.global_step == 1
    with pytest.raises(AttributeError, match="decides automatic_optimization"):
        model.automatic_optimization = False


class BackwardCounter(L.Callback):
    """Listens to a step hook, so the module must take Lightning's path and call it every step."""

    def __init__(self) -> None:
        self.calls = 0

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.calls += 1


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_the_lean_step_trains_exactly_as_lightnings_manual_step(tmp_path: Path, cls: type[SequentialRec]) -> None:
    lean, hooked = twins(cls)
    counter = BackwardCounter()
    for name, (model, callbacks) in {"lean": (lean, []), "hooked": (hooked, [counter])}.items():
        dm = toy_datamodule(tmp_path / name, LINES, model.sample_spec, batch_size=4)
        trainer = quiet_trainer(tmp_path / name, max_epochs=2, limit_val_batches=0, callbacks=callbacks)
        trainer.fit(model, datamodule=dm)
        assert not model.automatic_optimization
        assert model._lean_step is (name == "lean")
        assert trainer.global_step == 2 * trainer.num_training_batches  # the lean step counts its steps too
    assert counter.calls == 2 * trainer.num_training_batches  # a listened hook is called every step
    # the same operations in the same order: the same weights, bit for bit, and the schedule stepped alike
    for (name, p), q in zip(lean.named_parameters(), hooked.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert lean.lr_schedulers().get_last_lr() == hooked.lr_schedulers().get_last_lr()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("trainer_args", "applies"),
    [
        ({}, True),
        ({"precision": "bf16-mixed"}, True),  # autocast without a loss scaler
        ({"strategy": "ddp_spawn", "devices": 2}, False),  # gradients are reduced in Lightning's backward
    ],
)
def test_the_lean_step_applies_only_where_it_does_what_lightning_would(
    tmp_path: Path, trainer_args: dict[str, Any], applies: bool
) -> None:
    args = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False, **trainer_args}
    trainer = L.Trainer(default_root_dir=tmp_path, enable_progress_bar=False, **args)
    assert lean_step_applies(trainer) is applies
    listening = L.Trainer(default_root_dir=tmp_path, callbacks=[BackwardCounter()], logger=False)
    assert hooks_listened(listening) == ["BackwardCounter.on_after_backward"]
    assert not lean_step_applies(listening)


class _Hook:
    """A callable object: Lightning cannot read whether it overrides a hook (it has no ``__code__``)."""

    def __call__(self, *args: Any) -> None:
        pass


def test_a_hook_lightning_cannot_inspect_counts_as_listened(tmp_path: Path) -> None:
    trainer = L.Trainer(
        default_root_dir=tmp_path, callbacks=[L.pytorch.callbacks.LambdaCallback(on_after_backward=_Hook())]
    )
    assert "LambdaCallback.on_after_backward" in hooks_listened(trainer)
    assert not lean_step_applies(trainer)
