"""HSTU with time buckets: the model reads its batches' timestamps, in training, evaluation and prediction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys_attn.data.batches import EvalSplit
from recsys_attn.data.samples import SampleSpec
from recsys_attn.errors import ConfigError
from recsys_attn.models.hstu import HSTU
from recsys_attn.serving.histories import refuse_untimed
from recsys_attn.serving.scorer import PortableScorer
from tests.conftest import quiet_trainer, timed_datamodule

pytestmark = pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers")

N_USERS, N_ITEMS = 12, 15
# each user's items at growing gaps (user u: gaps of 60 * u seconds), so the time bias has varied buckets
ROWS = [
    f"{u},{100 + (3 * u + j) % N_ITEMS},{1_600_000_000 + 60 * u * j * j}"
    for u in range(1, N_USERS + 1)
    for j in range(8)
]


def model(buckets: int) -> HSTU:
    torch.manual_seed(0)
    return HSTU(N_ITEMS, hidden_size=16, num_blocks=1, max_len=6, time_buckets=buckets, num_negatives=4)


def test_time_buckets_make_the_model_read_times_and_the_batches_carry_them(tmp_path: Path) -> None:
    hstu = model(16)
    assert hstu.sample_spec == SampleSpec("next", 6, times=True)
    assert model(0).sample_spec == SampleSpec("next", 6)
    dm = timed_datamodule(tmp_path, ROWS, hstu.sample_spec)
    batch = dm.store.eval_batch(torch.arange(4), EvalSplit.TEST)
    assert batch.times is not None and batch.times.shape == batch.input.shape
    with torch.no_grad():
        scores = hstu.score(batch.input, batch.times)  # [4, n_items + 1]
        later = hstu.score(batch.input, batch.times * 3)
    assert scores.shape == (4, N_ITEMS + 1) and not torch.equal(scores, later)  # the times enter the scores
    with pytest.raises(ValueError, match=r"HSTU reads each input's timestamp \(model.time_buckets=16\)"):
        hstu.score(batch.input)


def test_an_hstu_with_time_buckets_trains_validates_and_predicts_through_lightning(tmp_path: Path) -> None:
    hstu = model(16)
    dm = timed_datamodule(tmp_path, ROWS, hstu.sample_spec)
    before = [b.time_bias.detach().clone() for b in hstu.encoder.blocks]
    trainer = quiet_trainer(tmp_path, max_epochs=2)
    trainer.fit(hstu, datamodule=dm)
    assert any(not torch.equal(b0, b.time_bias) for b0, b in zip(before, hstu.encoder.blocks, strict=True))
    (metrics,) = trainer.test(hstu, datamodule=dm, verbose=False)
    assert metrics["test/users"] == N_USERS and 0.0 <= metrics["test/ndcg@10"] <= 1.0
    (out,) = trainer.predict(hstu, datamodule=dm)
    assert out["items"].shape == (N_USERS, 20 if N_ITEMS >= 20 else N_ITEMS + 1)


def test_an_hstu_with_time_buckets_is_not_exported_or_served_from_untimed_histories() -> None:
    hstu = model(8)
    with pytest.raises(ConfigError, match=r"reads each history item's timestamp.*cannot be exported"):
        PortableScorer(hstu, k=5, filter_seen=True)
    with pytest.raises(ConfigError, match=r"histories from users\.jsonl are read without them"):
        refuse_untimed(hstu.sample_spec, "users.jsonl")
    refuse_untimed(model(0).sample_spec, "users.jsonl")  # a model without times is served as before
