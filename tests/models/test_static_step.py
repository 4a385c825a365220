"""model.static_shapes: batches of one shape, a masked loss, equal to the default step (CUDA graphs' CPU half)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from recsys_attn.constants import PAD
from recsys_attn.data.batches import TrainBatch, TrainRequest
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.samples import SampleSpec
from recsys_attn.errors import ConfigError
from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.gru4rec import GRU4Rec
from recsys_attn.models.hstu import HSTU
from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.sequential import SequentialRec
from recsys_attn.models.settings import SASRecSettings
from recsys_attn.settings import build_settings
from tests.conftest import quiet_trainer, toy_datamodule
from tests.tolerances import assert_close, tol

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

N_ITEMS = 14
# users of 3 to 12 items: histories longer and shorter than the window, so both padding and cutting happen
LINES = [f"{u} {1 + (5 * u + 3 * j) % N_ITEMS}" for u in range(1, 11) for j in range(3 + u)]
MAX_LEN, BATCH = 6, 4


def datamodule(tmp_path: Path, spec: SampleSpec) -> SeqDataModule:
    return toy_datamodule(tmp_path, LINES, spec, batch_size=BATCH)


def batch_of(dm: SeqDataModule, rows: list[int], seed: int = 3) -> TrainBatch:
    return dm.on_after_batch_transfer(TrainRequest(torch.tensor(rows), seed), 0)


def test_static_batches_keep_their_width_and_fill_a_short_batch(tmp_path: Path) -> None:
    static = datamodule(tmp_path, SampleSpec("next", MAX_LEN, static=True))
    plain = datamodule(tmp_path / "p", SampleSpec("next", MAX_LEN))
    short_user = 0  # user 1: 4 items, 2 of them for training -> one input, 5 columns of padding
    got, trimmed = batch_of(static, [short_user]), batch_of(plain, [short_user])
    assert got.input.shape == got.target.shape == (BATCH, MAX_LEN) and trimmed.input.shape == (1, 1)
    assert torch.equal(got.input[:1, -1:], trimmed.input) and torch.equal(got.target[:1, -1:], trimmed.target)
    assert (got.input[1:] == PAD).all() and (got.target[1:] == PAD).all()  # filler rows: nothing to learn
    assert got.seq is not None and got.seq.shape == (BATCH,)


def twin_models(cls: type[SequentialRec], **settings: Any) -> tuple[SequentialRec, SequentialRec]:
    torch.manual_seed(0)
    sizes: dict[str, Any] = {"hidden_size": 16, "max_len": MAX_LEN, "dropout": 0.0, "loss": "ce"}
    sizes |= {} if cls is GRU4Rec else {"num_blocks": 2, "num_heads": 2}
    plain = cls(N_ITEMS, **sizes, **settings)
    static = cls(N_ITEMS, **sizes, **settings, static_shapes=True)
    static.load_state_dict(plain.state_dict())
    return plain, static


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec, GRU4Rec, HSTU])
def test_the_static_step_has_the_loss_and_gradients_of_the_default_step(
    tmp_path: Path, cls: type[SequentialRec]
) -> None:
    plain, static = twin_models(cls)
    assert static.sample_spec == SampleSpec(**{**vars(plain.sample_spec), "static": True})
    dm_plain, dm_static = datamodule(tmp_path / "p", plain.sample_spec), datamodule(tmp_path / "s", static.sample_spec)
    rows = [0, 4, 9]  # a short last batch: the static one is filled with an empty row
    b_plain, b_static = batch_of(dm_plain, rows), batch_of(dm_static, rows)
    assert b_static.input.shape == (BATCH, b_static.input.shape[1]) and b_plain.input.shape[0] == 3
    loss_plain = plain.training_step(b_plain, 0)
    loss_static = static.training_step(b_static, 0)
    rtol = tol(torch.float32, 2000)  # a cross-entropy over 15 items at up to 24 positions, through two blocks
    assert_close(loss_static, loss_plain, rtol=rtol, what="loss")
    loss_plain.backward()
    loss_static.backward()
    for (name, p), q in zip(plain.named_parameters(), static.parameters(), strict=True):
        if p.grad is not None:
            assert q.grad is not None, name
            assert_close(q.grad, p.grad, rtol=rtol, atol=rtol * float(p.grad.abs().max()), what=name)


def test_a_static_fit_follows_the_default_fit_through_lightning(tmp_path: Path) -> None:
    """Three epochs through the trainer (the loader, the optimiser, the epoch's loss): the same losses either way."""
    plain, static = twin_models(SASRec, lr=1e-2)
    got = {}
    for name, model in (("plain", plain), ("static", static)):
        dm = datamodule(tmp_path / name, model.sample_spec)
        trainer = quiet_trainer(tmp_path / name, max_epochs=3, limit_val_batches=0)
        trainer.fit(model, datamodule=dm)
        got[name] = trainer.callback_metrics["train/loss_epoch"]
    assert_close(got["static"], got["plain"], rtol=tol(torch.float32, 2000 * 3 * 3))  # 3 steps x 3 epochs of drift
    start = torch.log(torch.tensor(float(N_ITEMS)))  # an untrained model's cross-entropy over the items
    assert got["static"] < 0.9 * start  # and it learned


def test_static_shapes_need_the_cross_entropy_loss() -> None:
    with pytest.raises(ConfigError, match=r"model\.static_shapes: needs model\.loss=ce"):
        build_settings(SASRecSettings, {"static_shapes": True, "loss": "bce"}, "model")
