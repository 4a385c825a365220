"""Replace a log's user/item ids by original ones from ``file_id original_id`` map files."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys_attn.data.download import data_path
from recsys_attn.data.errors import DataError
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.readers import read_id_map
from recsys_attn.data.sources import Source

_FIELDS = {"user": "user_id_map", "item": "item_id_map"}


def id_map_paths(source: Source, data_dir: str | Path) -> dict[str, Path]:
    """The map file of each of ``user``/``item`` that ``source`` sets; it must exist (maps are not downloaded)."""
    out = {}
    for column, key in _FIELDS.items():
        value = getattr(source, key)
        if value is None:
            continue
        path = data_path(value, data_dir)
        if not path.is_file():
            raise DataError(f"data.source.{key}: no file at {path}")
        out[column] = path
    return out


def translate_ids(prepared: Prepared, raw: pl.DataFrame, maps: dict[str, Path], log_path: Path) -> Prepared:
    """``prepared`` with the ``user_id``/``item_id`` of its id tables replaced by the original ids.

    Only the id tables change: internal indices (and so checkpoints) are the same with or without maps.
    ``raw`` (the log as read, with ``line``) is used to name the first line of an unmapped id.
    """
    tables = {"user": prepared.users, "item": prepared.items}
    for column, path in maps.items():
        ids = tables[column]
        id_type = ids.schema[f"{column}_id"]  # e.g. String ids of a csv log
        table = read_id_map(path).select(pl.col("file_id").cast(id_type, strict=False), "original_id")
        joined = ids.join(table, left_on=f"{column}_id", right_on="file_id", how="left", maintain_order="left")
        missing = joined.filter(pl.col("original_id").is_null())
        if missing.height:
            bad = missing[f"{column}_id"][0]
            line = raw.filter(pl.col(column) == bad).select(pl.col("line").min()).item()
            raise DataError(f"{log_path}:{line}: {column} id {bad} is not in data.source.{_FIELDS[column]} ({path})")
        tables[column] = joined.select(f"{column}_idx", pl.col("original_id").alias(f"{column}_id"))
    return Prepared(prepared.interactions, tables["user"], tables["item"], prepared.meta)
