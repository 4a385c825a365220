"""Top-K recommendations: history filtered, original ids, exact items for a popularity ranking."""

from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.samples import SampleSpec
from recsys_attn.models.popularity import Popularity
from recsys_attn.serving.recommend import recommend
from tests.conftest import toy_datamodule

# Evaluated users (leave-one-out: train, val, test):
#   user 30: 900 | 301 | 302     user 40: 700 | 401 | 402     user 50: 900 800 | 501 | 502
EVAL_LINES = ["30 900", "30 301", "30 302", "40 700", "40 401", "40 402", "50 900", "50 800", "50 501", "50 502"]
# Single-item users (training only) make the training counts distinct: 900:6 800:5 700:4 600:3 550:2, others 0.
EXTRA = {900: 4, 800: 4, 700: 3, 600: 3, 550: 2}
# Original ids deliberately differ from the internal indices (both are sorted by original id).


def make_dm(tmp_path: Path) -> SeqDataModule:
    lines = list(EVAL_LINES)
    user = 100
    for item, n in EXTRA.items():
        for _ in range(n):
            lines.append(f"{user} {item}")
            user += 1
    return toy_datamodule(tmp_path, lines, SampleSpec("next", 5))


@pytest.fixture
def dm(tmp_path: Path) -> SeqDataModule:
    return make_dm(tmp_path)


def popularity(dm: SeqDataModule, **settings: object) -> Popularity:
    return Popularity(dm.n_items, item_popularity=dm.item_popularity, **settings)


def items_per_user(recs: pl.DataFrame) -> dict[int, list[int]]:
    return {u: g.sort("rank")["item_id"].to_list() for (u,), g in recs.group_by("user_id")}


def test_the_cold_column_marks_the_items_no_training_sequence_holds(dm: SeqDataModule) -> None:
    assert dm.prepared is not None
    model = popularity(dm)
    untrained = torch.nonzero(dm.item_popularity[1:] == 0).squeeze(1) + 1  # [C] item_idx, e.g. val/test targets
    favoured = int(untrained[0])
    scores = dm.item_popularity.float().clone()  # [n_items + 1]
    scores[favoured] = 100.0  # an untrained item the model ranks first (as features can)
    model.score = lambda items: scores[None, :].expand(items.shape[0], -1)  # type: ignore[method-assign]
    recs = recommend(model, dm, k=3)
    cold_ids = dm.prepared.items["item_id"].gather(untrained.numpy() - 1)
    assert recs["cold"].to_list() == recs["item_id"].is_in(cold_ids.implode()).to_list()
    assert recs.filter(pl.col("cold"))["item_id"].unique().to_list() == [dm.prepared.items["item_id"][favoured - 1]]


def test_test_split_top3_filters_history_and_uses_original_ids(dm: SeqDataModule) -> None:
    recs = recommend(popularity(dm), dm, k=3)
    assert recs.columns == ["user_id", "rank", "item_id", "score", "propensity", "n_unknown", "fallback", "cold"]
    assert recs["propensity"].to_list() == [1.0] * 9  # greedy: every item is served for sure
    assert not recs["fallback"].any() and recs["n_unknown"].sum() == 0  # the data's own users
    # users in evaluation-set order, ranks 0..k-1 within each
    assert recs["user_id"].to_list() == [30] * 3 + [40] * 3 + [50] * 3
    assert recs["rank"].to_list() == [0, 1, 2] * 3
    assert items_per_user(recs) == {
        30: [800, 700, 600],  # history 900 301
        40: [900, 800, 600],  # history 700 401
        50: [700, 600, 550],  # history 900 800 501
    }
    assert recs.filter(pl.col("user_id") == 50)["score"].to_list() == [4.0, 3.0, 2.0]


def test_validation_split_uses_the_shorter_history(dm: SeqDataModule) -> None:
    recs = recommend(popularity(dm), dm, k=3, history="val")
    # validation histories: 30 -> 900, 40 -> 700, 50 -> 900 800
    assert items_per_user(recs) == {30: [800, 700, 600], 40: [900, 800, 600], 50: [700, 600, 550]}
    recs = recommend(popularity(dm), dm, k=1, history="val")
    assert items_per_user(recs) == {30: [800], 40: [900], 50: [700]}


def test_all_history_serves_every_user_after_everything_known(dm: SeqDataModule) -> None:
    recs = recommend(popularity(dm), dm, k=2, history="all")
    assert recs["user_id"].unique(maintain_order=True).to_list() == [30, 40, 50, *range(100, 116)]
    got = items_per_user(recs)
    assert got[30] == [800, 700]  # history 900 301 302 (the test item 302 is known now)
    assert got[100] == [800, 700]  # a single-item user (900), in no evaluation set
    assert got[112] == [900, 800]  # history 600


def test_users_by_original_id_in_the_order_given(dm: SeqDataModule) -> None:
    recs = recommend(popularity(dm), dm, k=1, history="all", users=[112, 30])
    assert recs["user_id"].to_list() == [112, 30] and recs["item_id"].to_list() == [900, 800]
    recs = recommend(popularity(dm), dm, k=1, users=["50"])  # ids are cast to the data's id type
    assert recs["user_id"].to_list() == [50]
    with pytest.raises(ValueError, match=r"users: 1 id\(s\) not in the data, e.g. \[999\]"):
        recommend(popularity(dm), dm, history="all", users=[30, 999])
    with pytest.raises(ValueError, match=r"not among the test set's users \(try history=all\), e.g. \[100\]"):
        recommend(popularity(dm), dm, users=[100])


@pytest.mark.parametrize("kind", ["next", "cloze"])
def test_transformers_serve_whole_histories_without_seen_items(tmp_path: Path, kind: str) -> None:
    from recsys_attn.models.bert4rec import BERT4Rec
    from recsys_attn.models.sasrec import SASRec

    dm = toy_datamodule(tmp_path, [*EVAL_LINES, "60 900"])  # connected to max_len 200 next-item samples
    cls = SASRec if kind == "next" else BERT4Rec
    torch.manual_seed(0)
    model = cls(dm.n_items, hidden_size=8, num_blocks=1, num_heads=1, max_len=4)
    recs = recommend(model, dm, k=dm.n_items, history="all")
    seen = {30: {900, 301, 302}, 40: {700, 401, 402}, 50: {900, 800, 501, 502}, 60: {900}}
    all_items = set(dm.prepared.items["item_id"].to_list())
    assert items_per_user(recs).keys() == seen.keys()
    for user, items in items_per_user(recs).items():
        assert set(items) == all_items - seen[user]  # every unseen item once, no seen one
    assert dm.spec == model.sample_spec  # recommend cut the histories the way this model reads them


def test_without_filtering_history_items_stay(dm: SeqDataModule) -> None:
    recs = recommend(popularity(dm, filter_seen=False), dm, k=3)
    assert items_per_user(recs) == {u: [900, 800, 700] for u in (30, 40, 50)}


def test_max_users_and_small_batches(dm: SeqDataModule) -> None:
    full = recommend(popularity(dm), dm, k=3)
    assert recommend(popularity(dm), dm, k=3, batch_size=1).equals(full)
    first_two = recommend(popularity(dm), dm, k=3, max_users=2, batch_size=1)
    assert first_two.equals(full.filter(pl.col("user_id").is_in([30, 40])))
    empty = recommend(popularity(dm), dm, k=3, max_users=0)
    assert empty.height == 0 and empty.columns == full.columns


def test_k_beyond_the_rankable_items_drops_filtered_ones(dm: SeqDataModule) -> None:
    recs = recommend(popularity(dm), dm, k=1000)
    history = {30: {900, 301}, 40: {700, 401}, 50: {900, 800, 501}}
    all_items = set(dm.prepared.items["item_id"].to_list())
    for user, items in items_per_user(recs).items():
        assert len(items) == len(set(items)) == dm.n_items - len(history[user])
        assert set(items) == all_items - history[user]
    assert recs["score"].is_finite().all()


class RecordingPopularity(Popularity):
    """Popularity that records the mode and grad state it was scored in."""

    def score(self, items: torch.Tensor) -> torch.Tensor:
        self.seen_modes = [*getattr(self, "seen_modes", []), (self.training, torch.is_grad_enabled())]
        return super().score(items)


def test_scores_in_eval_mode_without_grad_then_restores_the_mode(dm: SeqDataModule) -> None:
    model = RecordingPopularity(dm.n_items, item_popularity=dm.item_popularity)
    model.train()
    recs = recommend(model, dm, k=2, batch_size=2)
    assert model.seen_modes == [(False, False), (False, False)]  # 3 users in batches of 2
    assert model.training and recs.height == 6


def test_bad_arguments_are_rejected(dm: SeqDataModule, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history must be one of val, test, all"):
        recommend(popularity(dm), dm, history="train")
    with pytest.raises(ValueError, match="k and batch_size"):
        recommend(popularity(dm), dm, k=0)
    fresh = toy_datamodule(tmp_path / "fresh", ["1 10"], setup=False)
    with pytest.raises(RuntimeError, match="set up"):
        recommend(popularity(dm), fresh)


def test_an_item_only_the_features_file_names_is_recommended_and_marked_cold(tmp_path: Path) -> None:
    """``unknown_items=add``: an item with features and no interaction is in the catalogue, scored through them."""
    from recsys_attn.models.sasrec import SASRec

    lines = [*EVAL_LINES, "60 900", "60 800", "60 700"]
    (tmp_path / "items.csv").write_text("item_id,genre\n900,a\n800,a\n700,b\n555,a\n")  # 555: no interaction
    features = {"path": str(tmp_path / "items.csv"), "unknown_items": "add"}
    dm = toy_datamodule(tmp_path, lines, SampleSpec("next", 5), features=features)
    assert dm.prepared is not None and dm.prepared.items["item_id"].to_list()[-1] == 555
    torch.manual_seed(0)
    pop, feats = dm.item_popularity, dm.item_features
    model = SASRec(dm.n_items, pop, item_features=feats, hidden_size=8, num_blocks=1, max_len=5)
    recs = recommend(model, dm, k=dm.n_items)
    new = recs.filter(pl.col("item_id") == 555)
    assert new.height == recs["user_id"].n_unique() and new["cold"].all()  # every user may be served it
    assert not recs.filter(pl.col("item_id") == 900)["cold"].any()
