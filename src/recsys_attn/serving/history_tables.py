"""Tabular history files (csv, tsv, parquet) grouped into blocks of users in bounded memory.

A user's rows may be anywhere in the file, so a block of users cannot be cut from the file as it is read. A file of
at most ``PART_ROWS`` rows is grouped in memory. A larger one goes through a temporary folder (removed at the end,
also on error), in steps whose memory does not grow with the file:

1. Split: one streaming scan checks every row as ``data.readers.read_tabular`` does and writes it to one of
   ``ceil(rows / PART_ROWS)`` buckets (Arrow IPC files) by a hash of its user id, so each bucket holds whole users.
2. Group: each bucket alone is grouped as a small file is (a user's items ordered by timestamp, then line) and
   written back sorted by each user's first line.
3. Merge: the buckets, each sorted, are merged by first line into blocks of ``block_users`` users, a record batch
   of each bucket read at a time.

What is kept for every user is its first line (8 bytes) until the merge order is sorted (about 26 bytes a user
then), and its bucket (2 bytes) while merging.

Either way the blocks are the same: users in the order of their first row, each with its items in time order.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, cast

import numpy as np
import polars as pl
import pyarrow as pa

from recsys_attn.data.errors import DataError, shorten
from recsys_attn.data.lines import SEPARATOR_NAMES, Layout, Rows, check_file, first_bad_line, header
from recsys_attn.data.readers import check_id_dtype
from recsys_attn.data.timestamps import (
    add_counts,
    not_a_timestamp,
    timestamp_expr,
    unit_counts,
    warn_mixed_units,
)

ENCODING = "utf-8"
"""History files are read as UTF-8 (JSON is UTF-8 by definition), strictly: a bad byte fails naming its line."""

PART_ROWS = 500_000
"""Rows grouped in memory at once: a file of more rows is split into ``ceil(rows / PART_ROWS)`` buckets (a csv's
rows estimated from its first MiB)."""

MAX_BUCKETS = 512
"""Buckets open for writing at most (one file each): past ``MAX_BUCKETS * PART_ROWS`` rows, buckets grow instead."""

BATCH_ROWS = 100_000
"""Rows of the file split into buckets at a time."""

CSV_CHUNK_BYTES = 4 << 20
"""Bytes of csv polars decodes at a time. Its default, 32 MiB, decodes to ~150 MiB of strings per chunk in flight."""

_LZ4 = pa.ipc.IpcWriteOptions(compression="lz4")
"""The temporary files are Arrow IPC, lz4-compressed: written and read a record batch at a time."""

COLUMNS = {"user": "user_id", "item": "item_id", "timestamp": "timestamp"}
"""The standard name of each column of a history table (as in ``read_tabular``), and its name in the file."""


@dataclass(frozen=True)
class Table:
    """A history table whose header names the columns it needs.

    Attributes:
        path: The file.
        separator: ``,`` or tab for text, None for parquet.
        columns: The ``COLUMNS`` the file has (``timestamp`` is optional).
        schema: The dtype of each of ``columns`` in the file (String in text).
    """

    path: Path
    separator: str | None
    columns: dict[str, str]
    schema: dict[str, pl.DataType]

    @property
    def kind(self) -> str:
        return kind_of(self.separator)

    @property
    def expect(self) -> str:
        return expect_of(self.separator)

    @property
    def layout(self) -> Layout | None:
        """How a text file splits into fields (None for parquet)."""
        return None if self.separator is None else Layout(self.separator, self.expect, header=True, quoted=True)

    @property
    def rows(self) -> Rows:
        return Rows(self.path, ENCODING, text=self.separator is not None)


def kind_of(separator: str | None) -> str:
    return "parquet" if separator is None else f"{SEPARATOR_NAMES[separator]}-separated"


def expect_of(separator: str | None) -> str:
    return f"a {kind_of(separator)} table with a header naming the columns user_id, item_id and optionally timestamp"


def read_table(
    path: Path, separator: str | None, block_users: int, part_rows: int | None = None
) -> Iterator[pl.DataFrame]:
    """Frames of ``block_users`` users of ``path`` (the last one fewer), users in the order of their first line:
    ``user_id`` (text), ``items`` (list of text, ordered by timestamp, then line) and ``line`` (the user's first).

    Args:
        path: A csv (``separator`` ``,``), tsv (tab) or parquet (None) file of ``user_id,item_id[,timestamp]`` rows.
        block_users: Users per frame.
        part_rows: Rows grouped in memory at once (default ``PART_ROWS``, read when called).

    Raises:
        DataError: A malformed file, naming the file and line; raised before the first frame.
    """
    table = _open(Path(path), separator)
    rows = _rows(table)
    part_rows = PART_ROWS if part_rows is None else part_rows
    n_buckets = min(MAX_BUCKETS, max(1, -(-_rows_about(table) // part_rows)))
    if n_buckets == 1:
        frame = _collect(table, rows)
        _check(table, rows, _problems(table, frame), frame.height)
        _warn_units(table, _units(table, frame))
        grouped = _group(frame.drop("timestamp_raw", strict=False))
        del frame
        for offset in range(0, grouped.height, block_users):
            yield grouped.slice(offset, block_users)
        return
    with tempfile.TemporaryDirectory(prefix="recsys_histories_") as name:
        folder = Path(name)
        problems, n_rows, units = _split(table, rows, n_buckets, folder)
        _check(table, rows, problems, n_rows)
        _warn_units(table, units)
        yield from _merge(folder, [_group_bucket(folder, b, block_users) for b in range(n_buckets)], block_users)


# --------------------------------------------------------------------------------------------
# The file's rows, checked.


def _open(path: Path, separator: str | None) -> Table:
    """The ``Table`` of ``path``: the file is readable and its header names ``user_id`` and ``item_id``."""
    kind, expect = kind_of(separator), expect_of(separator)
    check_file(path, expect, text=separator is not None)
    try:
        if separator is None:
            schema: dict[str, pl.DataType] = dict(pl.read_parquet_schema(path))
        else:
            names = header(path, Layout(separator, expect, header=True, quoted=True), ENCODING)
            schema = {name: pl.String() for name in names}
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: could not be read as {kind}: {shorten(exc)}") from exc
    for column in ("user_id", "item_id"):
        if column not in schema:
            where = f"{path}:1" if separator is not None else str(path)
            raise DataError(f"{where}: no column '{column}'; expected {expect}, found {shorten(list(schema))}")
    columns = {key: name for key, name in COLUMNS.items() if name in schema}
    for key in ("user", "item"):
        check_id_dtype(schema[columns[key]], f"column '{columns[key]}' ({key})", path)
    return Table(path, separator, columns, {name: schema[name] for name in columns.values()})


def _scan(table: Table) -> pl.LazyFrame:
    """The file with its row ``line`` (1-based; a csv's header is line 1, as in ``lines.read_text``)."""
    if table.separator is None:
        return pl.scan_parquet(table.path, row_index_name="line", row_index_offset=1)
    return pl.scan_csv(
        table.path,
        separator=table.separator,
        quote_char='"',
        infer_schema=False,
        encoding="utf8",
        row_index_name="line",
        row_index_offset=2,
    )


def _rows_about(table: Table) -> int:
    """About how many rows the file has: a parquet file's metadata says; a csv's size over the bytes per line of
    its first MiB (counting them all would map the whole file into memory)."""
    if table.separator is None:
        return int(_collect(table, _scan(table).select(pl.len())).item())
    with table.path.open("rb") as fh:
        head = fh.read(1 << 20)  # not empty: checked by _open
    return round(table.path.stat().st_size * head.count(b"\n") / len(head))


def _rows(table: Table) -> pl.LazyFrame:
    """``line``, ``user`` and ``item`` (text), ``timestamp`` (Int64 microseconds since the epoch, read as
    ``data.timestamps`` reads every form; null when the file has none) and ``timestamp_raw`` (as in the file, when
    it has timestamps); blank lines dropped, as ``read_text`` does."""
    scan = _scan(table).select(
        pl.col("line").cast(pl.Int64), *[pl.col(name).alias(key) for key, name in table.columns.items()]
    )
    if table.separator is not None:
        scan = scan.filter(~pl.all_horizontal(pl.col(list(table.columns)).is_null()))
    ids = [pl.col("user").cast(pl.String), pl.col("item").cast(pl.String)]
    if "timestamp" not in table.columns:
        return scan.select("line", *ids, pl.lit(None, pl.Int64).alias("timestamp"))
    parsed = timestamp_expr(table.schema[table.columns["timestamp"]], _what(table), table.path)
    return scan.select("line", *ids, parsed.alias("timestamp"), pl.col("timestamp").alias("timestamp_raw"))


def _problems(table: Table, rows: pl.DataFrame) -> dict[str, int]:
    """The first line of ``rows`` with each problem ``read_tabular`` rejects, by name (``_check``'s order)."""
    bad = {"user": pl.col("user").is_null(), "item": pl.col("item").is_null()}
    if "timestamp" in table.columns:
        bad["timestamp"] = pl.col("timestamp_raw").is_null()
        bad["unparsed"] = pl.col("timestamp").is_null() & pl.col("timestamp_raw").is_not_null()
    found = rows.select(pl.col("line").filter(b).min().alias(name) for name, b in bad.items()).row(0, named=True)
    return {name: line for name, line in found.items() if line is not None}


def _check(table: Table, rows: pl.LazyFrame, problems: dict[str, int], n_rows: int) -> None:
    """Raise the ``DataError`` ``read_tabular`` raises for a file with these ``problems`` (first lines)."""
    if n_rows == 0:
        columns = sorted(table.columns.values())  # read_tabular's words
        raise DataError(
            f"{table.path}: empty file (no data rows), expected a {table.kind} table with a header naming "
            f"the columns {columns}"
        )
    for key in ("user", "item", "timestamp"):
        if key in problems:
            if table.layout is not None:
                first_bad_line(table.path, table.layout, ENCODING)  # a short line reads as nulls
            missing = pl.DataFrame({"line": [problems[key]], key: [None]})
            table.rows.check(missing, pl.lit(True), key, f"missing value in column '{table.columns[key]}' ({key})")
    if "unparsed" in problems:
        line = problems["unparsed"]
        value = _collect(table, rows.filter(pl.col("line") == line).select("timestamp_raw")).item()
        raise not_a_timestamp(table.rows, line, value, _what(table))


def _what(table: Table) -> str:
    """The timestamp column, quoted, for messages."""
    return f"'{table.columns['timestamp']}'"


def _units(table: Table, rows: pl.DataFrame) -> dict[str, int]:
    """``unit_counts`` of the raw timestamps of ``rows`` (none when the file has no timestamps)."""
    return unit_counts(rows["timestamp_raw"]) if "timestamp" in table.columns else {}


def _warn_units(table: Table, units: dict[str, int]) -> None:
    """Warn when the timestamps' numbers look like more than one unit (``warn_mixed_units``)."""
    if units:
        warn_mixed_units(units, _what(table), table.path)


def _collect(table: Table, query: pl.LazyFrame) -> pl.DataFrame:
    """``query`` on ``table`` run by the streaming engine; a file polars cannot parse fails naming its bad line."""
    try:
        with _small_csv_chunks():
            return query.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        _unreadable(table, exc)


def _unreadable(table: Table, exc: pl.exceptions.PolarsError) -> NoReturn:
    if table.layout is not None:
        first_bad_line(table.path, table.layout, ENCODING)  # an undecodable byte, a line of too many fields
    raise DataError(f"{table.path}: could not be read as {table.expect}: {shorten(exc)}") from exc


# --------------------------------------------------------------------------------------------
# Grouping: in memory, or split, grouped and merged.


def _group(rows: pl.DataFrame) -> pl.DataFrame:
    """``user_id``, ``items`` (ordered by timestamp, then line) and ``line`` (the first) of each user of ``rows``,
    users in the order of their first line."""
    return (
        rows.lazy()
        .with_columns(pl.col("line").min().over("user").alias("first"))
        .sort(["first", "timestamp", "line"], nulls_last=True)
        .group_by("first", maintain_order=True)
        .agg(pl.col("user").first().alias("user_id"), pl.col("item").alias("items"))
        .select("user_id", "items", pl.col("first").alias("line"))
        .collect()
    )


def _split(
    table: Table, rows: pl.LazyFrame, n_buckets: int, folder: Path
) -> tuple[dict[str, int], int, dict[str, int]]:
    """Write ``rows`` to ``folder/<bucket>.arrows`` by a hash of the user id, a batch at a time.

    Returns:
        The first line of each problem (``_problems``), the number of rows and the ``unit_counts`` of the
        timestamps; once a problem is found the rest is only scanned for the first line of problems of other kinds.
    """
    problems: dict[str, int] = {}
    n_rows = 0
    units: dict[str, int] = {}
    writers: dict[int, pa.RecordBatchStreamWriter] = {}
    try:
        with _small_csv_chunks():
            for batch in rows.collect_batches(chunk_size=BATCH_ROWS):  # in file order
                n_rows += batch.height
                problems = {**_problems(table, batch), **problems}  # the earlier batch's line stands
                if problems:
                    continue
                units = add_counts(units, _units(table, batch))
                bucket = (batch["user"].hash() % n_buckets).alias("bucket")  # [R]
                batch = batch.select("line", "user", "item", "timestamp", bucket)
                for (key,), piece in batch.partition_by("bucket", as_dict=True, include_key=False).items():
                    arrow = piece.to_arrow()
                    if key not in writers:
                        writers[key] = pa.ipc.new_stream(folder / f"{key}.arrows", arrow.schema, options=_LZ4)
                    writers[key].write_table(arrow)
    except pl.exceptions.PolarsError as exc:
        _unreadable(table, exc)
    finally:
        for writer in writers.values():
            writer.close()
    return problems, n_rows, units


def _group_bucket(folder: Path, bucket: int, block_users: int) -> np.ndarray:
    """Group ``folder/<bucket>.arrows`` into ``folder/<bucket>.arrow`` (users by first line, in record batches of
    ``block_users``) and return its users' first lines ([n] int64, ascending)."""
    path = folder / f"{bucket}.arrows"
    if not path.exists():  # no user hashed here
        return np.empty(0, np.int64)
    with pa.OSFile(str(path)) as source:
        rows = cast(pl.DataFrame, pl.from_arrow(pa.ipc.open_stream(source).read_all())).rechunk()
    path.unlink()
    grouped = _group(rows)
    del rows
    arrow = grouped.to_arrow()
    with pa.ipc.new_file(folder / f"{bucket}.arrow", arrow.schema, options=_LZ4) as writer:
        writer.write_table(arrow, max_chunksize=block_users)
    return grouped["line"].to_numpy()


def _merge(folder: Path, firsts: list[np.ndarray], block_users: int) -> Iterator[pl.DataFrame]:
    """The users of the grouped buckets of ``folder`` (first lines ``firsts``), merged by first line into blocks."""
    sizes = [first.size for first in firsts]
    order = np.argsort(np.concatenate(firsts), kind="stable")  # [N] users by first line
    source = np.repeat(np.arange(len(firsts), dtype=np.int16), sizes)[order]  # [N] the bucket of each, in order
    del firsts, order
    readers = {b: _Reader(folder / f"{b}.arrow") for b, size in enumerate(sizes) if size}
    try:
        for start in range(0, source.size, block_users):
            take = np.bincount(source[start : start + block_users], minlength=len(sizes))  # [K] users of each bucket
            yield pl.concat([readers[b].take(int(take[b])) for b in np.flatnonzero(take).tolist()]).sort("line")
    finally:
        for reader in readers.values():
            reader.close()


class _Reader:
    """The rows of an Arrow IPC file, in order, taken a few at a time: a record batch is read when needed."""

    def __init__(self, path: Path) -> None:
        self._file = pa.OSFile(str(path))  # read, not memory-mapped: what was taken leaves memory
        self._ipc = pa.ipc.open_file(self._file)
        self._batches = (self._ipc.get_batch(i) for i in range(self._ipc.num_record_batches))
        self._buffer = pl.DataFrame()

    def take(self, n: int) -> pl.DataFrame:
        """The next ``n`` rows."""
        pieces = []
        while n > 0:
            if self._buffer.height == 0:
                self._buffer = cast(pl.DataFrame, pl.from_arrow(next(self._batches)))  # a record batch: a frame
            piece = self._buffer.head(n)
            self._buffer = self._buffer.slice(piece.height)
            pieces.append(piece)
            n -= piece.height
        return pl.concat(pieces)

    def close(self) -> None:
        self._file.close()


@contextmanager
def _small_csv_chunks() -> Iterator[None]:
    """Let polars' streaming csv reader decode ``CSV_CHUNK_BYTES`` at a time (it reads ``POLARS_CSV_CHUNK_SIZE``
    as a scan starts); a value the user set stands."""
    if "POLARS_CSV_CHUNK_SIZE" in os.environ:
        yield
        return
    os.environ["POLARS_CSV_CHUNK_SIZE"] = str(CSV_CHUNK_BYTES)
    try:
        yield
    finally:
        os.environ.pop("POLARS_CSV_CHUNK_SIZE", None)
