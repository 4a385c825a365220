"""Polars preprocessing of a raw log: rating filter, dedup, k-core, chronological sort, id maps."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import polars as pl

from recsys_attn.data.errors import DataError
from recsys_attn.data.prepared import Prepared

log = logging.getLogger(__name__)

RAW_COLUMNS: tuple[str, ...] = ("user", "item", "timestamp", "rating", "line")
"""Columns of a raw frame, as every reader in ``recsys_attn.data.readers`` returns them."""


@dataclass(frozen=True)
class Preparation:
    """How a raw log is filtered before training.

    Attributes:
        rating_threshold: Keep interactions with ``rating >= rating_threshold`` (None: keep all).
            Needs a rating column.
        dedup: Drop duplicate rows, keeping the first in file order: with timestamps, rows equal on
            user, item, timestamp and rating; without, only a user's consecutive repeats of an
            item (and rating) in file order, since re-consuming an item later is signal.
        min_user_interactions: Iterative k-core: drop users with fewer interactions, until stable.
        min_item_interactions: Iterative k-core: drop items with fewer interactions, until stable.
    """

    rating_threshold: float | None = None
    dedup: bool = True
    min_user_interactions: int = 0
    min_item_interactions: int = 0

    def __post_init__(self) -> None:
        """Validate the settings; store the threshold as a float so hashes are stable."""
        for key in ("min_user_interactions", "min_item_interactions"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataError(f"data.preparation.{key}={value!r} must be an integer >= 0")
        if not isinstance(self.dedup, bool):
            raise DataError(f"data.preparation.dedup={self.dedup!r} must be true or false")
        threshold = self.rating_threshold
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, int | float):
                raise DataError(f"data.preparation.rating_threshold={threshold!r} must be a number or null")
            object.__setattr__(self, "rating_threshold", float(threshold))


def relax_advice(prep: Preparation, n_raw: int, n_kept: int) -> str:
    """Advice to append to ``use a larger log``: the filters of ``prep`` that shorten histories, if they dropped rows.

    Returns:
        `` or lower data.preparation.<key> (now <value>) ... (preparation kept <n_kept> of <n_raw> rows)``, or
        ``""`` when no row was dropped or no such filter is set (dedup drops only repeated rows, the user
        k-core only whole users).
    """
    settings = [
        f"data.preparation.{key} (now {value})"
        for key, value in (
            ("min_item_interactions", prep.min_item_interactions or None),
            ("rating_threshold", prep.rating_threshold),
        )
        if value is not None
    ]
    if n_kept >= n_raw or not settings:
        return ""
    return f" or lower {' or '.join(settings)} (preparation kept {n_kept} of {n_raw} rows)"


def _describe(prep: Preparation) -> str:
    return ", ".join(f"{key}={value}" for key, value in asdict(prep).items())


def k_core(interactions: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Drop users and items with too few interactions, repeating until nothing changes.

    Each round filters users, then items; rows are counted (duplicates count twice).
    """
    df = interactions
    rounds = 0
    while min_user > 0 or min_item > 0:
        before = df.height
        lf = df.lazy()
        if min_user > 0:
            lf = lf.filter(pl.len().over("user") >= min_user)
        if min_item > 0:
            lf = lf.filter(pl.len().over("item") >= min_item)
        df = lf.collect()
        rounds += 1
        if df.height == before:
            break
    log.debug("k-core (users >= %d, items >= %d): %d rounds", min_user, min_item, rounds)
    return df


def preprocess(raw: pl.DataFrame, prep: Preparation, source_name: str) -> Prepared:
    """Filter, sort and remap a raw log (the frame a reader returns, rows in file order).

    Args:
        raw: Columns ``user``, ``item``, ``timestamp``, ``rating``, ``line``.
        prep: The filters to apply.
        source_name: Data set name, used in messages and ``meta``.

    Returns:
        The prepared data set: ids remapped to ``1..n`` in order of the original ids, each
        user's interactions sorted by timestamp, then by line.
    """
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"data set {source_name!r}: raw frame lacks columns {missing}; it has {raw.columns}")
    df = raw.select(RAW_COLUMNS)
    if prep.rating_threshold is not None:
        if df.height > 0 and df["rating"].null_count() == df.height:
            raise DataError(
                f"data set {source_name!r}: data.preparation.rating_threshold="
                f"{prep.rating_threshold} needs ratings, but the source has no rating column"
            )
        kept = df.filter(pl.col("rating") >= prep.rating_threshold)
        df = _step(source_name, "rating filter", df, kept, "data.preparation.rating_threshold")
    if prep.dedup:
        df = _step(source_name, "dedup", df, drop_duplicates(df), "data.preparation.dedup")
    kept = k_core(df, prep.min_user_interactions, prep.min_item_interactions)
    df = _step(source_name, "k-core", df, kept, "data.preparation.min_user/item_interactions")
    if df.height == 0:
        raise DataError(
            f"data set {source_name!r}: no interactions left after preparation "
            f"({_describe(prep)}; {raw.height} raw rows); relax data.preparation"
        )
    users = _id_map(df, "user")
    items = _id_map(df, "item")
    # Row order so far is irrelevant: the unique ``line`` makes this sort total and stable.
    interactions = (
        df.lazy()
        .join(users.lazy(), left_on="user", right_on="user_id")
        .join(items.lazy(), left_on="item", right_on="item_id")
        .sort(["user_idx", "timestamp", "line"], nulls_last=True)
        .select("user_idx", "item_idx", pl.col("timestamp").cast(pl.Int64))
        .collect()
    )
    meta = {
        "source": source_name,
        "n_users": users.height,
        "n_items": items.height,
        "n_interactions": interactions.height,
        "n_raw": raw.height,
        "preparation": asdict(prep),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    log.info(
        "%s: %d raw rows -> %d interactions, %d users, %d items",
        source_name,
        raw.height,
        interactions.height,
        users.height,
        items.height,
    )
    return Prepared(interactions=interactions, users=users, items=items, meta=meta)


def _step(source_name: str, step: str, before: pl.DataFrame, after: pl.DataFrame, setting: str) -> pl.DataFrame:
    """Return ``after``, warning when ``step`` dropped more than half of the rows or of the users."""
    if after.height == before.height:
        return after
    users = (before["user"].n_unique(), after["user"].n_unique())
    if 2 * after.height < before.height or 2 * users[1] < users[0]:
        log.warning(
            "%s: %s dropped more than half of the data: %d of %d rows, %d of %d users; check %s",
            source_name,
            step,
            before.height - after.height,
            before.height,
            users[0] - users[1],
            users[0],
            setting,
        )
    return after


def drop_duplicates(df: pl.DataFrame) -> pl.DataFrame:
    """Drop duplicates of an earlier line (nulls equal), as ``Preparation.dedup`` describes.

    With timestamps: rows equal on user, item, timestamp and rating. Without (every timestamp
    null): rows equal on item and rating to the same user's previous row in file order.
    Sort-based: on a few cores one multi-key sort beats a hash table of millions of rows. The
    result is in sort order; callers sort it afterwards.
    """
    timed = df["timestamp"].null_count() < df.height
    keys = ["user", "item", "timestamp", "rating"] if timed else ["user", "item", "rating"]
    repeated = pl.all_horizontal([pl.col(k).eq_missing(pl.col(k).shift(1)) for k in keys])
    return df.sort([*keys, "line"] if timed else ["user", "line"], nulls_last=True).filter(~repeated)


def _id_map(df: pl.DataFrame, key: str) -> pl.DataFrame:
    """``<key>_idx`` (1..n, in numeric or lexical order of the ids) → ``<key>_id`` table."""
    return (
        df.select(pl.col(key).unique().sort().alias(f"{key}_id"))
        .with_row_index(f"{key}_idx", offset=1)
        .with_columns(pl.col(f"{key}_idx").cast(pl.Int64))
    )
