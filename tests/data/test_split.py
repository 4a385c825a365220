"""Leave-one-out and temporal splits on hand-written logs."""

import polars as pl
import pytest
import torch

from recsys_attn.data.errors import DataError
from recsys_attn.data.split import SplitConfig, split_interactions


def log(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["user_idx", "item_idx", "timestamp"], orient="row")


LOG = log([(1, 1, 10), (1, 2, 20), (1, 3, 30), (1, 4, 40), (2, 2, 11), (2, 3, 12), (3, 4, 50), (3, 1, 60), (3, 2, 70)])


def test_leave_one_out_exact_views() -> None:
    s = split_interactions(LOG, n_items=4, config=SplitConfig())
    v = s.values
    # user 1: train [1,2], val target 3, test target 4; user 2 (2 items) train only; user 3: train [4]
    assert [v[a:b].tolist() for a, b in zip(s.train_starts, s.train_ends, strict=True)] == [[1, 2], [2, 3], [4]]
    assert s.val.users.tolist() == [1, 3] and s.test.users.tolist() == [1, 3]
    assert s.val.targets.tolist() == [3, 1] and s.test.targets.tolist() == [4, 2]
    assert [v[a:b].tolist() for a, b in zip(s.val.starts, s.val.ends, strict=True)] == [[1, 2], [4]]
    assert [v[a:b].tolist() for a, b in zip(s.test.starts, s.test.ends, strict=True)] == [[1, 2, 3], [4, 1]]
    assert s.item_popularity().tolist() == [0, 1, 2, 1, 1]


def test_no_test_item_in_training_or_validation_inputs() -> None:
    s = split_interactions(LOG, n_items=4, config=SplitConfig())
    for i, t in enumerate(s.test.targets.tolist()):
        user = s.test.users[i].item()
        train_rows = [j for j in range(len(s.train_starts)) if s.train_starts[j] == s.test.starts[i]]
        assert train_rows, f"user {user} has a training sequence"
        j = train_rows[0]
        assert s.train_ends[j] <= s.val.ends[i] < s.test.ends[i]
        assert t not in s.values[s.val.starts[i] : s.val.ends[i]].tolist()


def test_temporal_split_uses_global_quantiles() -> None:
    rows = [(1, i, t) for i, t in [(1, 1), (2, 2), (3, 3), (4, 8), (5, 9)]] + [(2, 5, 4), (2, 6, 10)]
    s = split_interactions(log(rows), n_items=6, config=SplitConfig("temporal", 0.6, 0.8))
    # quantiles of [1,2,3,4,8,9,10]: 0.6 -> 4.6, 0.8 -> 8.8
    v = s.values
    assert [v[a:b].tolist() for a, b in zip(s.train_starts, s.train_ends, strict=True)] == [[1, 2, 3], [5]]
    assert s.val.users.tolist() == [1] and s.val.targets.tolist() == [4]
    assert s.test.users.tolist() == [1, 2] and s.test.targets.tolist() == [5, 6]
    assert v[s.test.starts[0] : s.test.ends[0]].tolist() == [1, 2, 3, 4]


def test_temporal_split_without_timestamps_fails_clearly() -> None:
    frame = LOG.with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp"))
    with pytest.raises(DataError, match="temporal needs timestamps"):
        split_interactions(frame, n_items=4, config=SplitConfig("temporal"))


def test_unknown_split_kind_names_the_key() -> None:
    with pytest.raises(DataError, match=r"data.split.kind: unknown split 'random'"):
        SplitConfig("random")


def test_empty_ranges_are_fine() -> None:
    s = split_interactions(log([(1, 1, 1), (1, 2, 2), (1, 3, 3)]), 3, SplitConfig())
    assert s.values.dtype == torch.long and len(s.val) == 1
