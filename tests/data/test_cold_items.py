"""data.split.cold_items: a share of the items held out of training, kept only as users' last (test) items."""

import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_attn.data.cold_items import hold_out_items, pick_cold_items
from recsys_attn.data.errors import DataError
from recsys_attn.data.split import SplitConfig, split_interactions


def log(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["user_idx", "item_idx", "timestamp"], orient="row")


def test_the_draw_is_the_share_of_the_catalogue_seeded_and_never_padding() -> None:
    cold = pick_cold_items(100, 0.1, seed=3)
    assert cold.shape == (101,) and int(cold.sum()) == 10 and not bool(cold[0])
    assert torch.equal(cold, pick_cold_items(100, 0.1, seed=3))
    assert not torch.equal(cold, pick_cold_items(100, 0.1, seed=4))
    assert int(pick_cold_items(100, 0.0, seed=3).sum()) == 0


def test_a_cold_item_stays_only_as_a_users_last_item() -> None:
    rows = [(1, 1, 1), (1, 2, 2), (1, 3, 3), (1, 2, 4), (2, 2, 1), (2, 1, 2), (2, 4, 3), (3, 1, 1), (3, 2, 2)]
    cold = torch.tensor([False, False, True, False, False])  # item 2
    kept = hold_out_items(log(rows), cold)
    # user 1 ends with item 2 (kept, its test target), its earlier 2 goes; user 2's 2 goes; user 3 would keep 2
    # items, too few to be tested (it would train on its cold last item): it goes too
    assert kept.rows() == [(1, 1, 1), (1, 3, 3), (1, 2, 4), (2, 1, 2), (2, 4, 3), (3, 1, 1)]


@settings(max_examples=50, deadline=None)
@given(
    histories=st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=8), min_size=1, max_size=12),
    share=st.floats(0.05, 0.9),
    seed=st.integers(0, 1000),
)
def test_training_and_validation_never_hold_a_cold_item(histories: list[list[int]], share: float, seed: int) -> None:
    rows = [(u + 1, item, t) for u, items in enumerate(histories) for t, item in enumerate(items)]
    s = split_interactions(log(rows), 12, SplitConfig(cold_items=share, cold_seed=seed))
    assert torch.equal(s.cold, pick_cold_items(12, share, seed))
    for a, b in zip(s.train_starts.tolist(), s.train_ends.tolist(), strict=True):
        assert not bool(s.cold[s.values[a:b]].any())
    assert not bool(s.cold[s.val.targets].any())
    for start, end in zip(s.test.starts.tolist(), s.test.ends.tolist(), strict=True):
        assert not bool(s.cold[s.values[start:end]].any())  # test inputs: no cold item either
    # every user whose last item is cold (and who keeps 3 items) is tested on it
    lasts = {u + 1: items[-1] for u, items in enumerate(histories)}
    cold_last = {u for u, item in lasts.items() if bool(s.cold[item])}
    tested = dict(zip(s.test.users.tolist(), s.test.targets.tolist(), strict=True))
    assert all(tested[u] == lasts[u] for u in cold_last if u in tested)
    assert int(s.item_popularity()[s.cold].sum()) == 0


def test_a_user_whose_items_are_all_held_out_stays_a_user_with_an_empty_history() -> None:
    rows = [(1, 1, 1), (1, 3, 2), (1, 4, 3), (2, 2, 1), (2, 2, 2)]  # user 2 (the last) took only item 2
    s = split_interactions(log(rows), 4, SplitConfig(cold_items=0.25, cold_seed=1))
    assert s.cold.nonzero().flatten().tolist() == [2]  # seed 1 holds item 2 out: user 2 keeps nothing
    assert s.full.users.tolist() == [1, 2] and (s.full.ends - s.full.starts).tolist() == [3, 0]


def test_the_option_is_checked_where_it_is_set() -> None:
    with pytest.raises(DataError, match=r"data.split.cold_items: expected a share in \[0, 1\), got 1.5"):
        SplitConfig(cold_items=1.5)
    with pytest.raises(DataError, match=r"data\.split\.kind=temporal does not take it"):
        SplitConfig(kind="temporal", cold_items=0.1)
