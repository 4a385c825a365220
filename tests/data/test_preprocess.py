"""Preprocessing: filters, iterative k-core, chronological sort with ties, deterministic id maps."""

from __future__ import annotations

import logging
from typing import Any

import polars as pl
import pytest

from recsys_attn.data.errors import DataError
from recsys_attn.data.preprocess import Preparation, k_core, preprocess

RAW_SCHEMA: dict[str, type[pl.DataType]] = {
    "user": pl.Int64,
    "item": pl.Int64,
    "timestamp": pl.Int64,
    "rating": pl.Float64,
    "line": pl.Int64,
}


def raw_log(rows: list[tuple[Any, ...]], user_dtype: type[pl.DataType] = pl.Int64) -> pl.DataFrame:
    """Rows of (user, item[, timestamp[, rating]]); ``line`` is the row position (1-based)."""
    full = [(*r, *([None] * (4 - len(r))), i) for i, r in enumerate(rows, start=1)]
    schema = {**RAW_SCHEMA, "user": user_dtype, "item": user_dtype}
    return pl.DataFrame(full, schema=schema, orient="row")


def pairs(raw: pl.DataFrame, prep: Preparation) -> list[tuple[object, object]]:
    """(original user, original item) of the prepared interactions, in their order."""
    p = preprocess(raw, prep, "toy")
    df = (
        p.interactions.join(p.users, on="user_idx", how="left", maintain_order="left")
        .join(p.items, on="item_idx", how="left", maintain_order="left")
        .select("user_id", "item_id")
    )
    return [tuple(r) for r in df.iter_rows()]


def test_k_core_cascades_over_several_rounds() -> None:
    # 2-core: item e has 1 interaction -> u5 left with d only -> d has 1 -> u4 left with c only ->
    # c has 1 -> u3 left with b only -> removed; b still has 2 (u1, u2). Stable after that.
    a, b, c, d, e = 1, 2, 3, 4, 5
    rows = [(1, a), (1, b), (2, a), (2, b), (3, b), (3, c), (4, c), (4, d), (5, d), (5, e)]
    raw = raw_log(rows)
    got = pairs(raw, Preparation(min_user_interactions=2, min_item_interactions=2))
    assert got == [(1, a), (1, b), (2, a), (2, b)]
    out = k_core(raw, 2, 2)
    assert out["line"].to_list() == [1, 2, 3, 4]


def test_k_core_user_and_item_thresholds_apply_separately() -> None:
    rows = [(1, 10), (1, 11), (1, 12), (2, 10), (3, 10), (3, 11)]
    # users >= 2 drops user 2; items >= 2 then drops 12 (1 left); user 1 keeps 2 rows: stable
    got = pairs(raw_log(rows), Preparation(min_user_interactions=2, min_item_interactions=2))
    assert got == [(1, 10), (1, 11), (3, 10), (3, 11)]
    # users only
    assert pairs(raw_log(rows), Preparation(min_user_interactions=3)) == [(1, 10), (1, 11), (1, 12)]
    # items only: 10 has 3, 11 has 2, 12 has 1
    got = pairs(raw_log(rows), Preparation(min_item_interactions=3))
    assert got == [(1, 10), (2, 10), (3, 10)]


def test_ids_remapped_in_numeric_order_from_one() -> None:
    raw = raw_log([(30, 7), (2, 100), (10, 7), (2, 9)])
    p = preprocess(raw, Preparation(), "toy")
    assert p.users.rows() == [(1, 2), (2, 10), (3, 30)]  # numeric, not lexical ("10" < "2")
    assert p.items.rows() == [(1, 7), (2, 9), (3, 100)]
    assert p.interactions.rows() == [(1, 3, None), (1, 2, None), (2, 1, None), (3, 1, None)]
    assert (p.n_users, p.n_items, p.n_interactions) == (3, 3, 4)
    assert p.users.schema == pl.Schema({"user_idx": pl.Int64, "user_id": pl.Int64})
    assert p.interactions.schema == pl.Schema({"user_idx": pl.Int64, "item_idx": pl.Int64, "timestamp": pl.Int64})


def test_string_ids_remapped_in_lexical_order() -> None:
    raw = raw_log([("b", "9"), ("a", "10"), ("c", "9")], user_dtype=pl.String)
    p = preprocess(raw, Preparation(), "toy")
    assert p.users.rows() == [(1, "a"), (2, "b"), (3, "c")]
    assert p.items.rows() == [(1, "10"), (2, "9")]
    assert p.interactions.rows() == [(1, 1, None), (2, 2, None), (3, 2, None)]


def test_chronological_sort_breaks_ties_by_line() -> None:
    # user 2 comes first in the file; within a user: timestamp, then line for equal timestamps
    rows = [(2, 50, 7), (1, 10, 5), (1, 11, 3), (1, 12, 5), (1, 13, 1), (2, 51, 7), (2, 52, 6)]
    raw = raw_log(rows)
    got = preprocess(raw, Preparation(), "toy").interactions
    assert got.rows() == [
        (1, 4, 1),  # item 13
        (1, 2, 3),  # item 11
        (1, 1, 5),  # item 10, line 2
        (1, 3, 5),  # item 12, line 4
        (2, 7, 6),  # item 52
        (2, 5, 7),  # item 50, line 1
        (2, 6, 7),  # item 51, line 6
    ]


def test_without_timestamps_order_is_file_order() -> None:
    raw = raw_log([(1, 5), (2, 1), (1, 3), (1, 4)])
    assert pairs(raw, Preparation()) == [(1, 5), (1, 3), (1, 4), (2, 1)]


def test_dedup_drops_exact_duplicates_keeping_the_first_line() -> None:
    rows = [(1, 1, 5, 4.0), (1, 2, 5, 4.0), (1, 1, 5, 4.0), (1, 1, 5, 3.0), (1, 1, 6, 4.0)]
    p = preprocess(raw_log(rows), Preparation(), "toy")
    # the duplicate on line 3 goes; same item with another rating or time stays
    assert p.interactions.rows() == [(1, 1, 5), (1, 2, 5), (1, 1, 5), (1, 1, 6)]
    assert preprocess(raw_log(rows), Preparation(dedup=False), "toy").n_interactions == 5


def test_dedup_without_timestamps_keeps_re_consumption() -> None:
    # user 1 returns to item 1 after item 2: signal, kept; user 2's lines interleave with user 1's
    raw = raw_log([(1, 1), (2, 7), (1, 2), (1, 1), (2, 8), (2, 7)])
    assert pairs(raw, Preparation()) == [(1, 1), (1, 2), (1, 1), (2, 7), (2, 8), (2, 7)]


def test_dedup_without_timestamps_drops_a_users_consecutive_repeats() -> None:
    # user 2's line between user 1's two (1, 1) does not break user 1's run; a new rating does
    r = [(1, 1, None, 4.0), (2, 1, None, 4.0), (1, 1, None, 4.0), (1, 1, None, 5.0), (1, 2), (1, 2)]
    rows = [*r, (2, 1, None, 4.0), (1, 1, None, 4.0)]  # user 1 back to item 1: kept
    p = preprocess(raw_log(rows), Preparation(), "toy")
    assert p.interactions.rows() == [(1, 1, None), (1, 1, None), (1, 2, None), (1, 1, None), (2, 1, None)]
    assert preprocess(raw_log(rows), Preparation(dedup=False), "toy").n_interactions == 8


@pytest.mark.parametrize(
    ("rows", "prep", "step"),
    [
        ([(1, 1, 1, 1.0), (1, 2, 2, 1.0), (2, 1, 3, 5.0)], Preparation(rating_threshold=4), "rating filter"),
        ([(1, 1), (1, 1), (1, 1), (1, 1), (2, 1)], Preparation(), "dedup"),  # 3 of 5 rows
        ([(1, 1), (1, 2), (2, 1), (3, 1)], Preparation(min_user_interactions=2), "k-core"),  # 2 of 3 users
    ],
)
def test_a_step_dropping_most_rows_or_users_warns_naming_it(
    rows: list[tuple[Any, ...]], prep: Preparation, step: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="recsys_attn.data.preprocess"):
        preprocess(raw_log(rows), prep, "toy")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"toy: {step} dropped more than half of the data")


def test_dropping_half_or_less_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    # dedup drops 1 of 5 rows; k-core (items >= 2) then 2 of 4 rows and none of the 2 users
    raw = raw_log([(1, 1), (1, 1), (1, 2), (2, 1), (2, 3)])
    with caplog.at_level(logging.WARNING, logger="recsys_attn.data.preprocess"):
        assert preprocess(raw, Preparation(min_item_interactions=2), "toy").n_interactions == 2
    assert caplog.records == []


def test_rating_threshold_keeps_ratings_at_or_above() -> None:
    raw = raw_log([(1, 1, 1, 4.0), (1, 2, 2, 3.5), (2, 1, 3, 5.0), (2, 3, 4, 1.0)])
    assert pairs(raw, Preparation(rating_threshold=4)) == [(1, 1), (2, 1)]


def test_rating_threshold_without_ratings_is_an_error() -> None:
    with pytest.raises(DataError, match=r"'toy': data.preparation.rating_threshold=4.0 needs"):
        preprocess(raw_log([(1, 1)]), Preparation(rating_threshold=4), "toy")


def test_nothing_left_names_data_set_and_settings() -> None:
    raw = raw_log([(1, 1), (1, 2), (2, 1)])
    prep = Preparation(min_user_interactions=5)
    with pytest.raises(DataError) as err:
        preprocess(raw, prep, "toy")
    assert str(err.value) == (
        "data set 'toy': no interactions left after preparation (rating_threshold=None, "
        "dedup=True, min_user_interactions=5, min_item_interactions=0; 3 raw rows); "
        "relax data.preparation"
    )


def test_meta_counts_and_settings() -> None:
    p = preprocess(raw_log([(1, 1), (2, 1), (2, 2)]), Preparation(min_item_interactions=1), "toy")
    assert {k: p.meta[k] for k in ("source", "n_users", "n_items", "n_interactions")} == {
        "source": "toy",
        "n_users": 2,
        "n_items": 2,
        "n_interactions": 3,
    }
    assert p.meta["preparation"]["min_item_interactions"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_user_interactions": -1}, "data.preparation.min_user_interactions=-1"),
        ({"min_item_interactions": 2.5}, "data.preparation.min_item_interactions=2.5"),
        ({"rating_threshold": "high"}, "data.preparation.rating_threshold='high'"),
        ({"dedup": "yes"}, "data.preparation.dedup='yes'"),
    ],
)
def test_preparation_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        Preparation(**kwargs)  # type: ignore[arg-type]


def test_threshold_stored_as_float() -> None:
    assert Preparation(rating_threshold=4).rating_threshold == 4.0
