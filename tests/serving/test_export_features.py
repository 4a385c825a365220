"""A model with item features served: its exported scorer and ``recommend`` rank as the module scores.

The features are a categorical, a multi-valued and a numeric column (each with items that lack a value), fused
into the items on both sides; two items only the features file names and one only a held-out target holds have no
training interaction (cold): the model knows them by their features alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch

from recsys_attn.constants import PAD
from recsys_attn.data.batches import EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.samples import SampleSpec
from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.sequential import SequentialRec
from recsys_attn.serving.recommend import recommend
from recsys_attn.serving.scorer import export_scorer
from tests.conftest import toy_datamodule
from tests.serving.scorer_checks import (
    assert_same_top_k,
    direct_reference,
    feature_ops,
    histories,
    reference,
    run_onnx,
    run_program,
    served_top_k,
)

MAX_LEN = 6
HIDDEN = 16
K = 8
N_LOGGED = 30
FEATURE_ONLY = (2000, 2001)  # in the features file, in no user's log (``unknown_items=add``)
TARGET_ONLY = 1999  # the held-out test item of user 11 alone: in the log, in no training sequence
COLD = (*FEATURE_ONLY, TARGET_ONLY)
# Ten users with 8..26 items (longer than MAX_LEN), original ids 1000 + x; user 11 ends on TARGET_ONLY.
LINES = [
    *(f"{u} {1000 + (7 * u + 11 * j) % N_LOGGED}" for u in range(1, 11) for j in range(6 + 2 * u)),
    *(f"11 {1000 + j}" for j in range(8)),
    f"11 {TARGET_ONLY}",
]
COLUMNS: dict[str, Any] = {
    "genre": "categorical",
    "tags": {"kind": "multi", "separator": "|"},
    "price": {"kind": "numeric", "scale": "standard"},
}


def item_rows() -> list[str]:
    """``item_id,genre,tags,price`` for every item; some lack a genre, some their tags, some a price."""
    rows = ["item_id,genre,tags,price"]
    for x in range(N_LOGGED):
        genre = "" if x % 7 == 3 else ("drama", "comedy", "noir")[x % 3]
        tags = "" if x % 5 == 2 else "|".join(t for i, t in enumerate("abcd") if (x >> i) & 1 or i == x % 4)
        price = "" if x % 6 == 1 else f"{1.5 * x}"
        rows.append(f"{1000 + x},{genre},{tags},{price}")
    cold = [f"{TARGET_ONLY},comedy,b|c,12.5", f"{FEATURE_ONLY[0]},noir,a|d,7.0", f"{FEATURE_ONLY[1]},drama,,40.0"]
    return [*rows, *cold]


def features_data(tmp_path: Path) -> SeqDataModule:
    (tmp_path / "items.csv").write_text("\n".join(item_rows()) + "\n")
    features = {"path": str(tmp_path / "items.csv"), "unknown_items": "add", "columns": COLUMNS}
    dm = toy_datamodule(tmp_path, LINES, SampleSpec("next", MAX_LEN), features=features)
    assert dm.item_features is not None and dm.item_features.spec().keys() == COLUMNS.keys()
    return dm


def features_model(cls: type[SequentialRec], dm: SeqDataModule, fusion: str) -> SequentialRec:
    """A model (random weights) reading the items' features on both sides, fused by ``fusion``."""
    torch.manual_seed(0)
    model = cls(
        dm.n_items,
        dm.item_popularity,
        item_features=dm.item_features,
        feature_fusion=fusion,
        feature_sides="both",
        hidden_size=HIDDEN,
        max_len=MAX_LEN,
        num_blocks=1,
    )
    with torch.no_grad():  # spread the scores: at the initial std of 0.02 many items would tie within rounding
        for p in model.encoder.item_emb.parameters():  # the id table and every feature layer (concat: its projection)
            p.mul_(20.0)
    return model


CASES = [(SASRec, "sum"), (SASRec, "concat"), (BERT4Rec, "concat")]
"""Next-item and cloze (whose MASK row has no features), each fusion kind that changes the item table's shape."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> SeqDataModule:
    return features_data(tmp_path_factory.mktemp("features_data"))


def test_the_toy_catalogue_has_cold_items_known_by_their_features(data: SeqDataModule) -> None:
    """What the tests below rely on: the cold items are exactly those without a training interaction."""
    assert data.prepared is not None
    index = dict(zip(data.prepared.items["item_id"], data.prepared.items["item_idx"], strict=True))
    cold = {index[i] for i in COLD}
    assert data.n_items == N_LOGGED + len(COLD)
    assert [i for i in range(1, data.n_items + 1) if data.item_popularity[i] == 0] == sorted(cold)


@pytest.mark.parametrize("fmt", ["onnx", "torch"])
@pytest.mark.parametrize(("cls", "fusion"), CASES, ids=lambda v: getattr(v, "__name__", v))
def test_exported_features_scorer_ranks_as_the_module(
    data: SeqDataModule, tmp_path: Path, cls: type[SequentialRec], fusion: str, fmt: str
) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="format=onnx needs the serve extra")
        pytest.importorskip("onnxscript", reason="format=onnx needs the serve extra")
    model = features_model(cls, data, fusion)
    assert data.prepared is not None
    path = export_scorer(model, data.prepared.items, tmp_path / f"s.{'onnx' if fmt == 'onnx' else 'pt2'}", fmt, k=K)
    run = run_onnx if fmt == "onnx" else run_program
    rows = torch.arange(len(data.store.evals[EvalSplit.FULL]))
    ref = reference(model, data, rows, K, feature_ops(model))
    cold = data.item_popularity[ref.items[:, :K]] == 0  # [B, K]
    assert cold.any() and not cold.all()  # cold items (their features alone) and warm ones are compared
    history = histories(data, rows)  # [B, T]
    items, scores = run(path.model, history)
    ties, _ = assert_same_top_k(items, scores, ref)
    assert ties <= items.numel() // 10  # the comparison is mostly exact
    for row in rows.tolist():  # B = 1, each history at its own width, no padding
        one = run(path.model, history[row : row + 1, int((history[row] == PAD).sum()) :])
        assert_same_top_k(*one, ref.row(row))


@pytest.mark.parametrize(("cls", "fusion"), CASES, ids=lambda v: getattr(v, "__name__", v))
def test_predict_serves_the_top_k_of_the_features_model_and_marks_its_cold_items(
    data: SeqDataModule, cls: type[SequentialRec], fusion: str
) -> None:
    """``recommend`` (``predict``'s): each user's items and scores are the best of the model's scores after the
    whole history, the history filtered out; ``cold`` is true exactly for the items without a training interaction."""
    assert data.prepared is not None
    model = features_model(cls, data, fusion)
    k = data.n_items  # every servable item: each cold item reaches every user who has not seen it
    recs = recommend(model, data, k=k, history="all")
    es = data.store.evals[EvalSplit.FULL]
    users = data.prepared.users["user_id"].gather((es.users - 1).numpy())  # [U] the FULL split's users, in order
    assert recs["user_id"].unique(maintain_order=True).to_list() == users.to_list()
    history = histories(data, torch.arange(len(es)))  # [U, T]
    ref = direct_reference(model, history, k, feature_ops(model))
    items, scores = served_top_k(recs, data.prepared.items, users, k)
    ties, err = assert_same_top_k(items, scores, ref)
    assert ties <= items.numel() // 10 and err <= ref.tol
    assert recs["item_id"].is_in(COLD).any() and not recs["item_id"].is_in(COLD).all()
    assert recs["cold"].to_list() == recs["item_id"].is_in(COLD).to_list()
    seen_target = recs.filter(pl.col("user_id") == 11)["item_id"]  # user 11 has taken the target-only item
    assert TARGET_ONLY not in seen_target.to_list() and set(FEATURE_ONLY) <= set(seen_target.to_list())
