"""LightningModules: settings, training step for every loss, learning, checkpoints, evaluation."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from recsys_attn.constants import PAD, mask_id
from recsys_attn.data.batches import EvalBatch, TrainBatch, cloze_batch, next_item_batch
from recsys_attn.data.history import HistoryIndex
from recsys_attn.data.samples import SampleSpec
from recsys_attn.errors import ConfigError
from recsys_attn.evaluation.metrics import target_ranks
from recsys_attn.models.base import RecModule
from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.encoder import Block, ReferenceBlock
from recsys_attn.models.esasrec import ESASRec
from recsys_attn.models.gru4rec import GRU4Rec
from recsys_attn.models.hstu import HSTU
from recsys_attn.models.losses import LOSSES
from recsys_attn.models.optimiser import fused_adam_applies, lr_factor
from recsys_attn.models.popularity import Popularity
from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.sequential import SequentialRec
from recsys_attn.models.transformer import TransformerRec
from tests.conftest import quiet_trainer as trainer
from tests.tolerances import assert_close, cross_entropy_atol, score_mass, sum_tol, tol

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`"),
]


N_ITEMS = 9
TINY = {"hidden_size": 16, "num_blocks": 1, "num_heads": 2, "max_len": 8, "dropout": 0.0}
TINY_OPS = 1000
"""Roundings behind one gradient (or output) element of a ``TINY`` SASRec: forward and back through the
embeddings, two layer norms, attention (dot products of 8, a softmax over 8), the 16 -> 64 -> 16 feed-forward,
the scores of 10 items and the mean over 14 positions, each a sum of 8 to 64 terms: a few hundred; 1000 to be safe."""
METRIC_TOL = tol(torch.float32, 2)
"""Metrics sum per-user values in float64 and hand the mean over as float32: a rounding or two of float32."""


def loader(batches: list[Any]) -> DataLoader:
    return DataLoader(batches, batch_size=None)  # type: ignore[arg-type]


WINDOWS = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9]])  # [2, L + 1]


def next_batch() -> TrainBatch:
    return next_item_batch(WINDOWS)


def cloze(n_items: int = N_ITEMS) -> TrainBatch:
    torch.manual_seed(0)
    rows = WINDOWS[:, 1:]  # [2, 8]
    return cloze_batch(rows, torch.tensor([False, True]), 0.5, mask_id(n_items))


# --- construction -----------------------------------------------------------------------------


def test_sasrec_builds_from_settings() -> None:
    model = SASRec(N_ITEMS, loss="bce", norm_first=False, **TINY)
    assert model.settings.hidden_size == 16 and model.settings.loss == "bce"
    assert model.encoder.causal and not model.encoder.norm_first
    assert model.encoder.item_emb.num_embeddings == N_ITEMS + 1  # PAD + items
    assert model.encoder.pos_emb.num_embeddings == 8
    assert model.loss_fn is LOSSES["bce"]
    assert torch.equal(model.item_popularity, torch.zeros(N_ITEMS + 1))


def test_bert4rec_builds_from_settings() -> None:
    model = BERT4Rec(N_ITEMS, mask_prob=0.4, **TINY)
    assert model.settings.mask_prob == 0.4
    assert not model.encoder.causal
    assert model.encoder.item_emb.num_embeddings == N_ITEMS + 2  # PAD + items + MASK
    scores = model.score(torch.tensor([[1, 2, mask_id(N_ITEMS)]]))
    assert scores.shape == (1, N_ITEMS + 1)  # MASK is never scored


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_transformers_take_the_positions_and_block_layout_settings(cls: type[TransformerRec]) -> None:
    default = cls(N_ITEMS, **TINY).encoder
    assert default.positions == "from_end" and all(type(b) is Block for b in default.blocks)
    model = cls(N_ITEMS, positions="from_start", block_layout="sasrec_reference", **TINY)
    assert model.encoder.positions == "from_start"
    assert all(isinstance(b, ReferenceBlock) for b in model.encoder.blocks)
    # BERT4Rec's evaluation input: the MASK after the history is the position after the last item.
    items = torch.tensor([[PAD, PAD, 3, 4, mask_id(N_ITEMS)]])  # [1, 5]
    assert torch.equal(model.encoder.position_ids(items), torch.tensor([[0, 0, 0, 1, 2]]))


def test_popularity_builds_from_settings() -> None:
    pop = torch.arange(N_ITEMS + 1)
    model = Popularity(N_ITEMS, pop, eval_ks=[1, 3], filter_seen=False)
    assert model.settings.eval_ks == [1, 3] and not model.settings.filter_seen
    assert model.item_popularity.dtype == torch.float32
    assert torch.equal(model.item_popularity, pop.float())


@pytest.mark.parametrize(
    ("cls", "key"),
    [
        (SASRec, "hiden_size"),
        (SASRec, "mask_prob"),  # a BERT4Rec-only key
        (BERT4Rec, "causal"),
        (Popularity, "hidden_size"),  # Popularity has evaluation settings only
    ],
)
def test_unknown_setting_raises_config_error_naming_it(cls: type, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^model\.{key}: unknown key"):
        cls(N_ITEMS, **{key: 1})


@pytest.mark.parametrize(
    ("key", "value"),
    [("schedule", "step"), ("negative_sampling", "hard"), ("activation", "swish")],
)
def test_invalid_setting_value_raises_config_error(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^model\.{key}: expected"):
        SASRec(N_ITEMS, **{key: value})


def test_unknown_loss_fails_at_construction() -> None:
    known = ", ".join(sorted(LOSSES))
    with pytest.raises(ConfigError, match=rf"^model\.loss: expected one of {known} \(got 'hinge'\)$"):
        SASRec(N_ITEMS, loss="hinge")


# --- training step ----------------------------------------------------------------------------

LOSS_CASES = [(name, "uniform") for name in sorted(LOSSES)] + [("sampled_softmax", "popularity")]


def build(cls: type[SequentialRec], n_items: int = N_ITEMS, **settings: Any) -> SequentialRec:
    """A tiny ``cls``: the transformer sizes of ``TINY``, or the GRU's."""
    tiny = GRU_TINY if cls is GRU4Rec else TINY
    return cls(n_items, **{**tiny, **settings})


GRU_TINY = {"hidden_size": 16, "num_layers": 2, "max_len": 8, "dropout": 0.0}
SEQUENTIAL = [SASRec, BERT4Rec, GRU4Rec, ESASRec, HSTU]


@pytest.mark.parametrize(("loss", "sampling"), LOSS_CASES)
@pytest.mark.parametrize("cls", SEQUENTIAL)
def test_training_step_every_loss(cls: type[SequentialRec], loss: str, sampling: str) -> None:
    torch.manual_seed(0)
    pop = torch.tensor([0.0, 5, 1, 1, 2, 3, 1, 1, 4, 2])
    model = build(cls, item_popularity=pop, loss=loss, negative_sampling=sampling, num_negatives=4)
    batch = cloze() if cls is BERT4Rec else next_batch()
    out = model.training_step(batch, 0)
    assert out.shape == ()
    assert torch.isfinite(out)
    out.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    enc: Any = model.encoder
    if cls is GRU4Rec:
        assert enc.gru.weight_hh_l1.grad.abs().sum() > 0
    elif cls is HSTU:
        assert enc.blocks[0].uvqk.weight.grad.abs().sum() > 0
        assert enc.blocks[0].rel_bias.grad.abs().sum() > 0
    else:
        assert enc.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
        assert enc.pos_emb.weight.grad.abs().sum() > 0
    assert torch.equal(enc.item_emb.weight.grad[PAD], torch.zeros(16))


@pytest.mark.parametrize("cls", SEQUENTIAL)
def test_a_seeded_step_replays_and_leaves_the_global_random_state_alone(cls: type[SequentialRec]) -> None:
    torch.manual_seed(0)
    model = build(cls, loss="bce", dropout=0.3)  # dropout and a sampled negative: two random draws
    batch = (cloze() if cls is BERT4Rec else next_batch())._replace(rng_seed=7)
    before = torch.get_rng_state()
    first = model.training_step(batch, 0)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(1)  # the global state does not matter to a seeded step
    assert model.training_step(batch, 0).item() == first.item()
    assert model.training_step(batch._replace(rng_seed=8), 0).item() != first.item()


@pytest.mark.parametrize(
    ("model", "samples"),
    [
        (SASRec(N_ITEMS, max_len=8), SampleSpec("next", 8)),
        (BERT4Rec(N_ITEMS, max_len=6, mask_prob=0.4), SampleSpec("cloze", 6, mask_prob=0.4)),
        (GRU4Rec(N_ITEMS, max_len=5), SampleSpec("next", 5)),
        (ESASRec(N_ITEMS, max_len=7), SampleSpec("next", 7)),
        (HSTU(N_ITEMS, max_len=9), SampleSpec("next", 9)),
        (Popularity(N_ITEMS, max_len=4), SampleSpec("next", 4)),
    ],
)
def test_each_model_declares_the_samples_it_learns_from(model: RecModule, samples: SampleSpec) -> None:
    assert model.sample_spec == samples
    if isinstance(model, SequentialRec):  # the embedding rows follow: BERT4Rec's MASK needs one more
        assert model.encoder.item_weights(N_ITEMS).shape[0] == N_ITEMS + 1
        assert model.encoder.item_emb.num_embeddings == samples.n_tokens(N_ITEMS)  # type: ignore[attr-defined]


def test_training_step_uses_only_positions_with_a_target(monkeypatch: pytest.MonkeyPatch) -> None:
    model = SASRec(N_ITEMS, **TINY)
    captured: dict[str, torch.Tensor] = {}

    def fake_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, ctx: Any) -> Any:
        captured.update(hidden=hidden, targets=targets, items=items)
        captured["ctx"] = ctx
        return hidden.sum()

    monkeypatch.setattr(model, "loss_fn", fake_loss)
    batch = next_batch()
    model.training_step(batch, 0)
    # Row 0 has 6 targets (after its paddings and before its end), row 1 has 8.
    assert torch.equal(captured["targets"], torch.tensor([4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9]))
    hidden = model.encoder(batch.input)
    assert_close(captured["hidden"], hidden[batch.target != PAD], rtol=tol(torch.float32, TINY_OPS), what="hidden")
    assert captured["items"].shape == (N_ITEMS + 1, 16)
    assert captured["ctx"].n_items == N_ITEMS
    assert captured["ctx"].history is None  # no history attached: negatives from the whole catalogue
    # With the history attached, each position carries its row's training sequence (6 of row 0's, 8 of row 1's).
    model.history = HistoryIndex.build(
        torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]), N_ITEMS
    )
    model.training_step(batch._replace(seq=torch.tensor([2, 0])), 0)
    assert torch.equal(captured["ctx"].seq, torch.tensor([2] * 6 + [0] * 8))
    assert captured["ctx"].history is model.history


def test_training_step_ce_equals_the_plain_softmax_of_the_old_implementation() -> None:
    """Same loss as the implementation before the fused CE and length grouping (85f9768), on a fixed batch."""
    torch.manual_seed(0)
    model = SASRec(N_ITEMS, **TINY)
    batch = next_batch()
    hidden = model.encoder(batch.input)[batch.target != PAD]  # [N, D]
    logits = hidden @ model.encoder.item_weights(N_ITEMS).T  # [N, V]
    logits[:, 0] = float("-inf")
    want = torch.nn.functional.cross_entropy(logits, batch.target[batch.target != PAD]).item()
    atol = cross_entropy_atol(torch.float32, hidden, model.encoder.item_weights(N_ITEMS), want)
    assert model.training_step(batch, 0).item() == pytest.approx(want, abs=atol)


def test_length_grouped_batches_weigh_each_position_as_a_random_batch_would() -> None:
    torch.manual_seed(0)
    model = SASRec(N_ITEMS, **TINY)
    plain = model.training_step(next_batch(), 0)  # mean over the 14 positions with a target
    scaled = model.training_step(next_batch()._replace(expected_targets=7.0), 0)
    assert scaled.item() == pytest.approx(plain.item() * 14 / 7.0, rel=tol(torch.float32, 2))  # a ratio, a product


# --- learning ---------------------------------------------------------------------------------


def cycle_windows(n_items: int, width: int) -> torch.Tensor:
    """A window ``[n, width]`` per start item of the endless cycle 1 -> 2 -> ... -> n_items -> 1."""
    starts = torch.arange(n_items)[:, None]  # [n, 1]
    return (starts + torch.arange(width)[None, :]) % n_items + 1  # [n, width]


def next_item_ranks(model: SASRec, n_items: int, length: int) -> torch.Tensor:
    windows = cycle_windows(n_items, length + 1)  # [n, L + 1]
    model.eval()
    with torch.no_grad():
        scores = model.score(windows[:, :-1])  # [n, n_items + 1]
    model.train()
    return target_ranks(scores, windows[:, -1])


def test_sasrec_learns_a_cycle() -> None:
    torch.manual_seed(0)
    n_items, length = 7, 6
    settings = {"hidden_size": 32, "num_blocks": 1, "num_heads": 2, "dropout": 0.0, "lr": 1e-2}
    model = SASRec(n_items, max_len=length, **settings)
    before = next_item_ranks(model, n_items, length)
    assert (before > 0).any()
    batch = next_item_batch(cycle_windows(n_items, length + 1))  # every position has a target
    opt = model.configure_optimizers()
    for _ in range(20):  # it takes 4 or 5 steps
        opt.zero_grad()
        model.training_step(batch, 0).backward()
        opt.step()
    # Shorter histories too: the model predicts the next item from any prefix.
    assert torch.equal(next_item_ranks(model, n_items, length), torch.zeros(n_items, dtype=torch.long))
    for short in (2, 1):
        assert torch.equal(next_item_ranks(model, n_items, short), torch.zeros(n_items, dtype=torch.long))


# --- checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SEQUENTIAL)
def test_checkpoint_round_trip(cls: type[SequentialRec], tmp_path: Path) -> None:
    torch.manual_seed(0)
    pop = torch.tensor([0.0, 5, 1, 1, 2, 3, 1, 1, 4, 2])
    model = build(cls, item_popularity=pop, loss="bce", weight_decay=0.1)
    batch = cloze() if cls is BERT4Rec else next_batch()
    t = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    t.fit(model, train_dataloaders=loader([batch, batch]))
    assert t.global_step == 2
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)

    loaded = cls.load_from_checkpoint(path)
    assert loaded.settings == model.settings and loaded.sample_spec == model.sample_spec
    assert loaded.n_items == N_ITEMS
    assert torch.equal(loaded.item_popularity, pop)
    items = torch.tensor([[PAD, 3, 4, 5], [6, 7, 8, mask_id(N_ITEMS) if cls is BERT4Rec else 9]])
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(items), model.score(items), rtol=0, atol=0)
    # The trained weights, not a fresh initialisation, were restored.
    torch.manual_seed(0)
    fresh = build(cls, item_popularity=pop, loss="bce", weight_decay=0.1).eval()
    with torch.no_grad():
        assert not torch.equal(fresh.score(items), loaded.score(items))


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_checkpoints_keep_positions_and_block_layout_and_older_ones_load_with_the_defaults(
    cls: type[SequentialRec], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = build(cls, positions="from_start", block_layout="sasrec_reference")
    batch = cloze() if cls is BERT4Rec else next_batch()
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(model, train_dataloaders=loader([batch]))
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)
    items = torch.tensor([[PAD, 3, 4, 5], [6, 7, 8, mask_id(N_ITEMS) if cls is BERT4Rec else 9]])
    loaded = cls.load_from_checkpoint(path).eval()
    assert loaded.settings == model.settings
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(items), model.eval().score(items), rtol=0, atol=0)
    # A checkpoint written before the two settings existed has neither hyperparameter: the defaults, which are
    # the only behaviour there was (and the parameter names of both layouts are the same).
    ckpt = torch.load(path, weights_only=False)
    for key in ("positions", "block_layout"):
        del ckpt["hyper_parameters"][key]
    torch.save(ckpt, tmp_path / "older.ckpt")
    older = cls.load_from_checkpoint(tmp_path / "older.ckpt")
    assert (older.settings.positions, older.settings.block_layout) == ("from_end", "standard")
    assert all(type(b) is Block for b in older.encoder.blocks)
    assert torch.equal(older.encoder.blocks[0].attn.qkv.weight, model.encoder.blocks[0].attn.qkv.weight)


# --- evaluation -------------------------------------------------------------------------------

# Counts of items 1..5 = [5, 3, 9, 1, 3]: ranking 3 > 1 > 2 = 5 > 4.
POPULARITY = torch.tensor([0.0, 5, 3, 9, 1, 3])
EVAL_BATCH = EvalBatch(
    users=torch.tensor([10, 11, 12, 13]),
    input=torch.tensor([[PAD, 2], [1, 4], [1, 3], [PAD, 4]]),
    target=torch.tensor([3, 2, 1, 2]),
    seen_rows=torch.tensor([1, 1, 2, 2, 3]),
    seen_items=torch.tensor([1, 4, 1, 3, 4]),
    later_rows=torch.tensor([], dtype=torch.long),
    later_items=torch.tensor([], dtype=torch.long),
)
# user 10: target 3, best item                                              -> rank 0
# user 11: target 2, history {1, 4} filtered: 3 above, 5 ties               -> rank 2
# user 12: target 1 seen before (kept), 3 filtered                          -> rank 0
# user 13: target 2, history {4}: 3, 1 above, 5 ties                        -> rank 3
# Unfiltered: 0, 3 (3, 1, 5), 1 (3), 3.


@pytest.mark.parametrize(
    ("filter_seen", "expected"),
    [
        (
            True,
            {
                "test/hr@1": 2 / 4,
                "test/hr@3": 3 / 4,
                "test/ndcg@1": 2 / 4,
                "test/ndcg@3": (1 + 1 / 2 + 1) / 4,  # 1 / log2(2 + 2) = 1/2
                "test/mrr": (1 + 1 / 3 + 1 + 1 / 4) / 4,
                "test/users": 4,
            },
        ),
        (
            False,
            {
                "test/hr@1": 1 / 4,
                "test/hr@3": 2 / 4,
                "test/ndcg@1": 1 / 4,
                "test/ndcg@3": (1 + 1 / math.log2(3)) / 4,
                "test/mrr": (1 + 1 / 4 + 1 / 2 + 1 / 4) / 4,
                "test/users": 4,
            },
        ),
    ],
)
def test_popularity_ranks_by_popularity(tmp_path: Path, filter_seen: bool, expected: dict[str, float]) -> None:
    model = Popularity(5, POPULARITY, eval_ks=[1, 3], filter_seen=filter_seen)
    (out,) = trainer(tmp_path).test(model, loader([EVAL_BATCH]), verbose=False)
    # intervals, segments and beyond-accuracy metrics have tests of their own (tests/evaluation)
    assert {k: out[k] for k in expected} == pytest.approx(expected, rel=METRIC_TOL)


@pytest.mark.parametrize("mode", ["uniform", "popularity"])
def test_sampled_protocol_is_logged_under_its_own_names(tmp_path: Path, mode: str) -> None:
    """With fewer allowed items than 100 negatives, every one is drawn: sampled = full ranks."""
    model = Popularity(5, POPULARITY, eval_ks=[1, 3], sampled_eval=mode)
    (out,) = trainer(tmp_path).test(model, loader([EVAL_BATCH]), verbose=False)
    sampled = {k.removesuffix("_s100"): v for k, v in out.items() if k.endswith("_s100")}
    assert set(sampled) == {"test/hr@1", "test/hr@3", "test/ndcg@1", "test/ndcg@3", "test/mrr"}
    assert out["test/hr@3"] == 3 / 4
    assert sampled == pytest.approx({k: out[k] for k in sampled}, rel=METRIC_TOL)


def test_an_evaluation_pass_logs_once_whatever_its_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics accumulate over the pass's batches and are logged at its end: host cost per pass, not per step.

    (``self.log`` costs Lightning ~1 ms a call; ten a step made a GPU validation step host-bound.)
    """
    model = Popularity(5, POPULARITY, eval_ks=[1, 3])
    calls: list[str] = []
    log = Popularity.log

    def counting_log(self: Popularity, name: str, *args: Any, **kwargs: Any) -> None:
        calls.append(name)
        log(self, name, *args, **kwargs)

    monkeypatch.setattr(Popularity, "log", counting_log)
    (one,) = trainer(tmp_path).test(model, loader([EVAL_BATCH]), verbose=False)
    per_pass = len(calls)
    calls.clear()
    others = EVAL_BATCH._replace(users=EVAL_BATCH.users + 100)
    batches = [EVAL_BATCH, others, EVAL_BATCH._replace(users=others.users + 100)]
    (three,) = trainer(tmp_path).test(model, loader(batches), verbose=False)
    assert len(calls) == per_pass
    assert three["test/users"] == 12 and one["test/users"] == 4  # accumulated over the pass, reset after it
    assert three["test/ndcg@3"] == pytest.approx(one["test/ndcg@3"], rel=METRIC_TOL)


def test_intervals_and_segments_reach_the_callbacks_and_the_loggers(tmp_path: Path) -> None:
    """Only the ranking metrics go through ``self.log``; the rest of a pass reaches the same places without it."""
    model = Popularity(5, POPULARITY, eval_ks=[1, 3], bootstrap=50)
    csv = CSVLogger(tmp_path, name="csv", version=0)
    t = L.Trainer(accelerator="cpu", logger=csv, enable_progress_bar=False, enable_model_summary=False)
    (returned,) = t.test(model, loader([EVAL_BATCH]), verbose=False)
    assert "test/ndcg@3" in returned and "test/ndcg@3_lo" not in returned  # the ranking metrics, as before
    published = {k: float(v) for k, v in t.callback_metrics.items()}  # what metrics.json is written from
    assert published["test/ndcg@3_lo"] <= published["test/ndcg@3"] <= published["test/ndcg@3_hi"]
    assert any(k.startswith("segments/test/") for k in published) and "test/coverage@3" in published
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"test/ndcg@3", "test/ndcg@3_lo", "test/coverage@3"} <= set(header)


def test_predict_step_filters_history() -> None:
    model = Popularity(5, POPULARITY, eval_ks=[1, 2])
    out = model.predict_step(EVAL_BATCH, 0)
    assert torch.equal(out["users"], EVAL_BATCH.users)
    # Users 10, 13: the global top 2; 11: 1 is filtered; 12: 1 and 3 are filtered (2 and 5 tie).
    assert torch.equal(out["items"][[0, 3]], torch.tensor([[3, 1], [3, 1]]))
    assert out["items"][1, 0] == 3 and out["items"][1, 1] in (2, 5)  # 2 and 5 tie
    assert sorted(out["items"][2].tolist()) == [2, 5]
    assert torch.equal(out["scores"], torch.tensor([[9.0, 5.0], [9.0, 3.0], [3.0, 3.0], [9.0, 5.0]]))
    assert torch.equal(model.item_popularity, POPULARITY)


def test_predict_step_does_not_write_into_the_popularity_buffer() -> None:
    """With one user, Popularity's scores are a view of its buffer: predict must not change it."""
    model = Popularity(5, POPULARITY, eval_ks=[2])
    one = EvalBatch(*(t[:1] for t in EVAL_BATCH[:3]), torch.tensor([0]), torch.tensor([3]), *EVAL_BATCH[5:])
    out = model.predict_step(one, 0)
    assert out["items"][0, 0] == 1 and out["items"][0, 1] in (2, 5)  # 3 is seen; 2 and 5 tie
    assert torch.equal(out["scores"], torch.tensor([[5.0, 3.0]]))
    assert torch.equal(model.item_popularity, POPULARITY)


# --- optimisation -----------------------------------------------------------------------------


def test_weight_decay_only_on_matrices() -> None:
    model = SASRec(N_ITEMS, weight_decay=0.1, lr=3e-3, betas=[0.8, 0.9], **TINY)
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decay["lr"] == 3e-3 and decay["betas"] == (0.8, 0.9)
    by_id = {id(p): n for n, p in model.named_parameters()}
    decayed = {by_id[id(p)] for p in decay["params"]}
    not_decayed = {by_id[id(p)] for p in no_decay["params"]}
    assert decayed == {n for n, p in model.named_parameters() if p.dim() == 2}
    assert not_decayed == {n for n, p in model.named_parameters() if p.dim() == 1}
    assert {"encoder.item_emb.weight", "encoder.pos_emb.weight"} <= decayed
    assert {"encoder.final_norm.weight", "encoder.blocks.0.attn.qkv.bias"} <= not_decayed
    assert len(decayed) + len(not_decayed) == len(list(model.parameters()))
    assert not opt.defaults["fused"]  # parameters on the CPU: the default implementation


def test_adam_is_fused_only_on_a_gpu_without_clipping_or_loss_scaling() -> None:
    assert fused_adam_applies({"cuda"}, None, "32-true") and fused_adam_applies({"cuda"}, 0.0, "bf16-mixed")
    assert not fused_adam_applies({"cpu"}, None, "32-true") and not fused_adam_applies({"cpu", "cuda"}, None, "32-true")
    assert not fused_adam_applies(set(), None, "32-true")  # no parameters
    assert not fused_adam_applies({"cuda"}, 1.0, "bf16-mixed")  # Lightning cannot clip a fused step's gradients
    assert not fused_adam_applies({"cuda"}, None, "16-mixed")  # GradScaler


def test_scheduler_follows_lr_factor() -> None:
    model = SASRec(N_ITEMS, lr=1e-2, warmup_steps=4, schedule="linear", **TINY)
    model.trainer = SimpleNamespace(estimated_stepping_batches=12)  # type: ignore[assignment]
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]
    assert sched["interval"] == "step"
    lrs = []
    for _ in range(13):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched["scheduler"].step()
    expected = [0.25, 0.5, 0.75, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]
    assert lrs == pytest.approx([1e-2 * f for f in expected], abs=1e-2 * tol(torch.float64, 4))  # Python floats


def test_lr_schedule_asks_for_the_total_only_when_it_needs_it() -> None:
    """A constant rate has no schedule (no scheduler, no step count asked); a warm-up has one, flat after it."""
    assert SASRec(N_ITEMS, **TINY).lr_schedule(lambda: pytest.fail("a constant rate asked for the total")) is None
    factor = SASRec(N_ITEMS, warmup_steps=4, **TINY).lr_schedule(lambda: 100)
    assert factor is not None and [factor(s) for s in (0, 1, 3, 4, 99)] == [0.25, 0.5, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("step", "schedule", "expected"),
    [
        (0, "cosine", 0.25),  # warmup: (step + 1) / warmup, whatever the schedule
        (1, "linear", 0.5),
        (3, "constant", 1.0),
        (4, "cosine", 1.0),  # decay starts at 1
        (4, "linear", 1.0),
        (6, "cosine", 0.5 + math.sqrt(2) / 4),  # progress 1/4: (1 + cos(pi/4)) / 2
        (6, "linear", 0.75),
        (8, "cosine", 0.5),
        (8, "linear", 0.5),
        (10, "cosine", 0.5 - math.sqrt(2) / 4),
        (12, "cosine", 0.0),
        (12, "linear", 0.0),
        (50, "linear", 0.0),  # past the end: stays at 0, never negative
        (50, "cosine", 0.0),
        (50, "constant", 1.0),
    ],
)
def test_lr_factor(step: int, schedule: str, expected: float) -> None:
    got = lr_factor(step, warmup=4, total=12, schedule=schedule)
    assert got == pytest.approx(expected, abs=tol(torch.float64, 4))  # a few float64 operations on values <= 1


def test_lr_factor_without_warmup() -> None:
    assert lr_factor(0, 0, 10, "linear") == 1.0
    assert lr_factor(5, 0, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(0, 0, 1, "cosine") == 1.0


def test_sampled_protocol_never_draws_items_the_user_interacted_with_later() -> None:
    """Validation: the user's later (test) item is an interaction, so never a sampled negative."""
    model = Popularity(5, POPULARITY, sampled_eval="uniform", eval_ks=[1])
    batch = EvalBatch(
        users=torch.tensor([10]),
        input=torch.tensor([[PAD, 4]]),
        target=torch.tensor([2]),
        seen_rows=torch.tensor([0]),
        seen_items=torch.tensor([4]),
        later_rows=torch.tensor([0]),
        later_items=torch.tensor([3]),  # the most popular item: drawn, it would rank above the target
    )
    model.test_step(batch, 0)
    # candidates {1, 5}: item 1 scores above, item 5 ties -> rank 2 -> mrr 1/3 (item 3 would make it 1/4)
    sampled = model.eval_metrics["test"]["sampled"].compute()
    assert sampled["test/mrr_s100"].item() == pytest.approx(1 / 3)
    full = model.eval_metrics["test"]["full"].compute()
    assert full["test/mrr"].item() == pytest.approx(1 / 4)  # the full ranking is unaffected


@pytest.mark.parametrize("cls", SEQUENTIAL)
def test_scores_are_fp32_under_bf16_autocast(cls: type[SequentialRec]) -> None:
    torch.manual_seed(0)
    model = build(cls).eval()
    items = WINDOWS[:, 1:]  # [2, 8]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        # the states and item vectors the scores are products of (HSTU: normalised, over its temperature)
        hidden, weights = model.similarity_inputs(model.encoder(items)[:, -1], model.encoder.item_weights(N_ITEMS))
        scores = model.score(items)  # [2, n_items + 1]
    assert scores.dtype == torch.float32  # a bf16 product would tie many items
    # the product itself is fp32: equal to fp32 arithmetic on the same (bf16) states, to the rounding of D terms
    # (a bf16 product would be off by ~eps(bf16) = 8e-3 of each score)
    weights = weights.float()
    expected = hidden.float() @ weights.T
    rtol = tol(torch.float32, TINY["hidden_size"])
    assert_close(scores, expected, rtol=rtol, atol=rtol * score_mass(hidden, weights), what="scores")


SGD_LR = 0.01


class SGDSASRec(SASRec):
    """SASRec under plain SGD, whose step is linear in the gradient (see the compile test)."""

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=SGD_LR)


class GradientSizes(L.Callback):
    """Sums, per parameter, the largest gradient element of every optimizer step."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        for name, p in pl_module.named_parameters():
            if p.grad is not None:
                self.total[name] = self.total.get(name, 0.0) + float(p.grad.abs().max())


def test_compile_trains_the_same_weights_and_keeps_checkpoint_names(tmp_path: Path) -> None:
    """``model.compile=true`` runs the encoder under torch.compile: same training, same parameter names.

    The compiled kernels round differently (fused, reordered), so the gradients of the two runs differ by
    ``r = tol(float32, TINY_OPS)`` of their size ``G``. Under SGD the two runs' weights then differ after ``S``
    steps by ``e_S <= lr * r * sum_t G_t * (1 + lr * |H|) ** S`` (``H``: the loss's curvature; ``lr * |H| << 1``
    here) plus the rounding of ``w - lr * g`` itself, ``eps * |w|`` a step. Adam, the models' optimizer, is
    left out on purpose: it divides each gradient element by its own size, so an element whose gradient is
    rounding noise takes a step of any size up to ``lr`` in either run. SASRec's key bias is such a parameter:
    it gets no gradient in exact arithmetic (a query's scores all shift by the same ``q . b_k``, which the
    softmax cancels), and its AdamW weights differed by 1.19e-6 on an AVX-512 CPU, 1e-9 on an AVX2 one.
    The optimizer is no part of what compiling the encoder changes.
    """
    batches = loader([next_batch(), next_batch()])
    steps = 2
    runs, sizes = [], GradientSizes()
    for compiled in (False, True):
        torch.manual_seed(0)
        model = SGDSASRec(N_ITEMS, **TINY, compile=compiled)
        callbacks = [sizes] if not compiled else []
        fit = trainer(tmp_path / str(compiled), max_steps=steps, limit_val_batches=0, callbacks=callbacks)
        fit.fit(model, train_dataloaders=batches)
        runs.append(model)
    eager, compiled_model = runs
    assert compiled_model.encoder._compiled_call_impl is not None  # the option did compile the encoder
    assert eager.encoder._compiled_call_impl is None
    evaluated = SASRec(N_ITEMS, **TINY, compile=True)
    evaluated.setup("validate")  # evaluate and predict run a compile=true checkpoint eager
    assert evaluated.encoder._compiled_call_impl is None
    assert list(compiled_model.state_dict()) == list(eager.state_dict())  # checkpoints load either way
    for (name, a), b in zip(eager.state_dict().items(), compiled_model.state_dict().values(), strict=True):
        moved = SGD_LR * tol(torch.float32, TINY_OPS) * sizes.total.get(name, 0.0)  # 0: a buffer, no gradient
        assert_close(b, a, rtol=sum_tol(torch.float32, steps), atol=moved, what=name)


def test_training_loss_is_logged_on_logging_steps_and_as_the_epoch_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``self.log`` per ``log_every_n_steps`` steps (each costs Lightning ~1.5 ms) and the exact epoch mean."""
    torch.manual_seed(0)
    model = SASRec(N_ITEMS, **TINY)
    short = next_item_batch(WINDOWS[:, 3:])  # fewer positions: the epoch mean must weigh by positions
    batches = [next_batch(), short, next_batch(), short]
    logged: list[tuple[str, float, int]] = []
    losses: list[tuple[float, int]] = []
    log, step = model.log, model.training_step

    def spy_log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        logged.append((name, float(value), model.global_step))
        log(name, value, *args, **kwargs)

    def spy_step(batch: TrainBatch, batch_idx: int) -> Any:
        loss = step(batch, batch_idx)
        losses.append((loss.item(), int((batch.target != PAD).sum())))
        return loss

    monkeypatch.setattr(model, "log", spy_log)
    monkeypatch.setattr(model, "training_step", spy_step)
    trainer(tmp_path, max_epochs=1, limit_val_batches=0, log_every_n_steps=2).fit(model, loader(batches))
    assert [(name, at) for name, _, at in logged] == [
        ("train/loss_step", 1),
        ("train/loss_step", 3),
        ("train/loss_epoch", 4),
    ]
    assert logged[0][1] == pytest.approx(losses[1][0]) and logged[1][1] == pytest.approx(losses[3][0])
    mean = sum(value * n for value, n in losses) / sum(n for _, n in losses)
    rel = tol(torch.float32, 8)  # float32: 4 products and their sum, divided by the count
    assert logged[2][1] == pytest.approx(mean, rel=rel)
    assert mean != pytest.approx(sum(value for value, _ in losses) / 4, rel=rel)  # weighing by positions matters
