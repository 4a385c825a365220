"""Serving users the model never saw, in process on toy data: same items as the same known users, the
popularity fallback, unknown items counted, and seeded draws that do not depend on batch_size."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.models.base import RecModule
from recsys_attn.serving.policies import make_policy
from recsys_attn.serving.recommend import known_users, recommend, serve
from tests.conftest import toy_datamodule
from tests.test_recommend import make_dm, popularity
from tests.tolerances import assert_close, tol

# Whole histories of the toy data's evaluated users (tests/test_recommend.py), oldest first.
HISTORIES = {30: [900, 301, 302], 40: [700, 401, 402], 50: [900, 800, 501, 502]}
NEW_ID = 1000  # the same histories served as users 1030, 1040, 1050


def write_histories(tmp_path: Path, suffix: str, histories: dict[int, list[object]]) -> Path:
    path = tmp_path / f"new{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"user_id": u, "items": i}) + "\n" for u, i in histories.items()))
        return path
    # one interaction a row, each user's newest first: the timestamps restore their order
    rows = [(u, str(item), t) for u, items in histories.items() for t, item in enumerate(items)]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    frame = frame.sort(["user_id", "timestamp"], descending=[False, True])
    if suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path, separator="\t" if suffix == ".tsv" else ",")
    return path


def model_of(kind: str, dm: SeqDataModule) -> RecModule:
    from recsys_attn.models.bert4rec import BERT4Rec
    from recsys_attn.models.sasrec import SASRec

    if kind == "popularity":
        return popularity(dm)
    torch.manual_seed(0)
    cls = SASRec if kind == "sasrec" else BERT4Rec
    # max_len 3: user 50's four items are cut to the most recent ones, as for known users
    return cls(dm.n_items, item_popularity=dm.item_popularity, hidden_size=8, num_blocks=1, num_heads=1, max_len=3)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
@pytest.mark.parametrize("kind", ["popularity", "sasrec", "bert4rec"])
def test_new_users_get_what_the_same_known_users_get(tmp_path: Path, suffix: str, kind: str) -> None:
    dm = make_dm(tmp_path)
    model = model_of(kind, dm)
    known = recommend(model, dm, k=5, history="all", users=list(HISTORIES))
    path = write_histories(tmp_path, suffix, {u + NEW_ID: items for u, items in HISTORIES.items()})
    new = recommend(model, dm, k=5, histories=path)
    assert new["user_id"].unique(maintain_order=True).to_list() == [u + NEW_ID for u in HISTORIES]
    expected = known.with_columns(pl.col("user_id") + NEW_ID)
    assert new.drop("score").equals(expected.drop("score"))
    # the same histories scored in another batch: the rounding of a forward pass (one block at hidden 8) and a product
    assert_close(new["score"].to_torch(), expected["score"].to_torch(), rtol=tol(torch.float32, 1000), what="scores")
    assert not new["fallback"].any() and new["n_unknown"].sum() == 0


def test_unknown_items_are_dropped_and_counted_and_no_known_item_means_popularity(tmp_path: Path) -> None:
    dm = make_dm(tmp_path)
    model = model_of("sasrec", dm)
    histories: dict[int, list[object]] = {
        1: [900, 12345, 301, "0302", 302],  # two unknown items (12345, and "0302" is not item 302)
        2: [12345, 999],  # nothing the model knows
        30: HISTORIES[30],  # the same as known user 30
    }
    recs = recommend(model, dm, k=3, histories=write_histories(tmp_path, ".jsonl", histories))
    by_user = {u: g for (u,), g in recs.group_by("user_id", maintain_order=True)}
    assert by_user[1].drop("user_id").equals(by_user[30].drop("user_id").with_columns(n_unknown=pl.lit(2, pl.Int32)))
    # training counts: 900:6 800:5 700:4 (tests/test_recommend.py); scores are the counts
    assert by_user[2]["item_id"].to_list() == [900, 800, 700] and by_user[2]["score"].to_list() == [6.0, 5.0, 4.0]
    assert by_user[2]["fallback"].all() and by_user[2]["n_unknown"].to_list() == [2] * 3
    assert not by_user[1]["fallback"].any() and not by_user[30]["fallback"].any()


def test_a_file_of_users_the_model_knows_nothing_of_gets_popularity(tmp_path: Path) -> None:
    dm = make_dm(tmp_path)
    path = write_histories(tmp_path, ".jsonl", {1: [12345], 2: []})
    recs = recommend(model_of("bert4rec", dm), dm, k=2, histories=path, batch_size=1)
    assert recs["item_id"].to_list() == [900, 800] * 2 and recs["fallback"].all()
    assert recs["n_unknown"].to_list() == [1, 1, 0, 0]


def many_users(tmp_path: Path) -> SeqDataModule:
    """150 users (more than two draw blocks of 64) over 20 items."""
    lines = [f"{u} {1 + (u * 7 + j * 3) % 20}" for u in range(1, 151) for j in range(3)]
    return toy_datamodule(tmp_path, lines)


@pytest.mark.parametrize(("name", "value"), [("temperature", 0.5), ("epsilon", 0.5)])
def test_seeded_draws_repeat_and_do_not_depend_on_batch_size(tmp_path: Path, name: str, value: float) -> None:
    dm = many_users(tmp_path)
    model = popularity(dm)
    policy = make_policy(name, **{name: value})
    items = dm.prepared.items["item_id"]
    runs = [
        recommend(model, dm, k=4, history="all", policy=policy, seed=7, batch_size=b) for b in (1, 10, 64, 100, 500)
    ]
    assert all(run.equals(runs[0]) for run in runs[1:])
    assert runs[0].height == 150 * 4 and not runs[0]["propensity"].eq(1.0).all()
    # batch_size 100: users 64-99 wait for the rest of their draw block, then the last batch takes all
    frames = list(serve(model, known_users(dm, model.sample_spec, "all", batch_size=100), items, 4, policy, 7))
    assert [f["user_id"].n_unique() for f in frames] == [64, 86] and pl.concat(frames).equals(runs[0])
    other = recommend(model, dm, k=4, history="all", policy=policy, seed=8)
    assert not other["item_id"].equals(runs[0]["item_id"])  # another seed, other draws
    # each user's items are servable: never one of their own history
    seen = dm.prepared.interactions.join(dm.prepared.items, on="item_idx").join(dm.prepared.users, on="user_idx")
    assert runs[0].join(seen, on=["user_id", "item_id"]).height == 0


def test_propensities_are_the_policy_s_for_the_servable_scores(tmp_path: Path) -> None:
    """The scores a policy draws from are the ranked ones (history filtered): its propensities say so."""
    dm = many_users(tmp_path)
    model = popularity(dm)
    policy = make_policy("temperature", temperature=2.0)
    recs = recommend(model, dm, k=3, history="all", policy=policy, seed=1, batch_size=150)
    (served,) = known_users(dm, model.sample_spec, "all", batch_size=150)
    ranked = model.rankable_scores(served.batch)  # [150, n_items + 1]
    idx = dm.prepared.items.select("item_id", "item_idx")
    slate = recs.join(idx, on="item_id", maintain_order="left")["item_idx"].to_torch().view(150, 3)
    expected = policy.propensities(ranked, slate)  # [150, 3]
    # float32 softmaxes of scores / 2 over the catalogue, maybe in another order: each exponent's rounding (up to
    # max |score| / 2) becomes a relative error of its probability, the sum over the columns adds its own
    finite = ranked[ranked.isfinite()]
    rtol = tol(torch.float32, ranked.shape[1]) * (1 + float(finite.abs().max()) / 2.0)
    assert_close(recs["propensity"].to_torch().view(150, 3), expected, rtol=rtol, what="propensities")
