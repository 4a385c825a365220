"""The one table of ``data.source.format`` names and the readers that read them."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl

from recsys_attn.data import readers
from recsys_attn.data.readers import Fixed, Reader
from recsys_attn.data.sources import FORMATS, Source

_MOVIELENS = ("user", "item", "rating", "timestamp")

READERS: dict[str, Reader] = {
    # user and item ids, one pair a line, each user's lines in time order (the SASRec data sets)
    "user_item": Fixed(" ", "2 space-separated integer fields 'user item'", ("user", "item")),
    # MovieLens-100K u.data
    "movielens_100k": Fixed(
        "\t", "4 tab-separated fields 'user item rating timestamp' (integers, rating a number)", _MOVIELENS
    ),
    # MovieLens-1M/10M ratings.dat, split on ':' so polars parses it; '' is the empty gap of '::'
    "movielens_dat": Fixed(
        ":",
        "4 '::'-separated fields 'user::item::rating::timestamp'",
        ("user", "", "item", "", "rating", "", "timestamp"),
    ),
    # MovieLens ratings.csv (ML-20M and later)
    "movielens_csv": Fixed(
        ",",
        "4 comma-separated fields 'userId,movieId,rating,timestamp'",
        _MOVIELENS,
        ("userId", "movieId", "rating", "timestamp"),
    ),
    # tabular logs whose columns data.source.columns names; their ids may be text
    "csv": partial(readers.read_tabular, separator=","),
    "tsv": partial(readers.read_tabular, separator="\t"),
    "parquet": partial(readers.read_tabular, separator=None),
    # one line per user: 'user item1 item2 ...', whitespace-separated, items in time order
    "sequences": readers.read_sequences,
}
"""Reader of each ``Source.format``: ``(path, source) -> frame`` with ``readers.OUTPUT_COLUMNS``."""

if set(READERS) != set(FORMATS):  # a format added on one side only: a bug, caught on import
    raise AssertionError(f"formats without a reader or readers without a format: {set(READERS) ^ set(FORMATS)}")


def read_interactions(path: Path, source: Source) -> pl.DataFrame:
    """Read ``path`` with the reader of ``source.format`` (a ``Source`` names a known format)."""
    return READERS[source.format](Path(path), source)
