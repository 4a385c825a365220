"""Frames streamed to one Parquet or CSV file as they come, written whole or not at all.

Each frame becomes a Parquet row group (or a run of CSV lines) as soon as it arrives, so the memory a run needs
does not grow with the number of frames; the file is built under a temporary name and renamed at the end
(``atomic.write_atomic``): a failure on the way leaves no output file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from recsys_attn.atomic import write_atomic

Schema = Mapping[str, pl.DataType]
Writer = Callable[[Path, Iterable[pl.DataFrame], Schema, Mapping[str, str]], None]


def write_stream(
    path: str | Path,
    frames: Iterable[pl.DataFrame],
    schema: Schema,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``frames`` (columns and dtypes of ``schema``) to ``path`` (``.parquet`` or ``.csv``, ``WRITERS``).

    Parquet gets one row group per non-empty frame and ``metadata`` as the file's key-value metadata; CSV has
    no place for metadata. With no frame at all, the file holds the columns and no row.

    Raises:
        ValueError: ``path`` has another suffix.
    """
    path = Path(path)
    write = WRITERS.get(path.suffix.lower())
    if write is None:
        raise ValueError(f"{path}: must end in one of {', '.join(WRITERS)}")
    return write_atomic(path, lambda tmp: write(tmp, frames, schema, metadata or {}))


def _parquet(tmp: Path, frames: Iterable[pl.DataFrame], schema: Schema, meta: Mapping[str, str]) -> None:
    arrow = pl.DataFrame(schema=dict(schema)).to_arrow().schema
    with pq.ParquetWriter(tmp, arrow.with_metadata(dict(meta))) as writer:
        for frame in frames:
            if frame.height:
                writer.write_table(frame.select(list(schema)).cast(pl.Schema(schema)).to_arrow().cast(arrow))


def _csv(tmp: Path, frames: Iterable[pl.DataFrame], schema: Schema, meta: Mapping[str, str]) -> None:
    with tmp.open("wb") as fh:
        pl.DataFrame(schema=dict(schema)).write_csv(fh)  # the header
        for frame in frames:
            frame.select(list(schema)).write_csv(fh, include_header=False)


WRITERS: dict[str, Writer] = {".parquet": _parquet, ".csv": _csv}
"""The writer of each output suffix."""
