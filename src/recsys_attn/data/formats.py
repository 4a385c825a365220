"""The one table of ``data.source.format`` names and the readers that read them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from recsys_attn.data import readers, tabular
from recsys_attn.data.errors import DataError
from recsys_attn.data.readers import Reader

if TYPE_CHECKING:
    from recsys_attn.data.sources import Source

READERS: dict[str, Reader] = {
    "user_item": readers.read_user_item,
    "movielens_100k": readers.read_movielens_100k,
    "movielens_dat": readers.read_movielens_dat,
    "movielens_csv": readers.read_movielens_csv,
    "csv": tabular.read_csv,
    "tsv": tabular.read_tsv,
    "parquet": tabular.read_parquet,
    "sequences": tabular.read_sequences,
}
"""Reader of each ``Source.format``: ``(path, source) -> frame`` with ``readers.OUTPUT_COLUMNS``."""


def read_interactions(path: Path, source: Source) -> pl.DataFrame:
    """Read ``path`` with the reader of ``source.format``."""
    reader = READERS.get(source.format)
    if reader is None:
        raise DataError(f"data.source.format={source.format!r} is unknown; known formats: {', '.join(sorted(READERS))}")
    return reader(Path(path), source)
