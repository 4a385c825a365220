"""Readers that turn a raw interaction file into one standard polars frame.

Every reader returns the columns ``user``, ``item`` (original ids), ``timestamp`` (Int64 microseconds
since the epoch, UTC, as ``data.timestamps`` reads every form; null when the format has none),
``rating`` (Float64, null when absent) and ``line`` (Int64, the 1-based line of the record in the
file, or row number; a stable tie-break for chronological order). Text is read by
``lines.read_text``: fixed formats (``user item``, MovieLens) as typed fields, tabular logs (csv,
tsv, parquet, whose columns ``Source.columns`` names) and one-line-per-user ``sequences`` with ids
that may be text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys_attn.data.errors import DataError, shorten
from recsys_attn.data.lines import (
    SEPARATOR_NAMES,
    Layout,
    Rows,
    check_file,
    first_bad_line,
    header,
    is_float,
    is_int,
    read_text,
)
from recsys_attn.data.sources import Source
from recsys_attn.data.timestamps import check_parsed, timestamp_expr, unit_counts, warn_mixed_units

log = logging.getLogger(__name__)

Reader = Callable[[Path, Source], pl.DataFrame]
"""A reader: ``(path, source) -> frame`` with the standard columns."""

OUTPUT_COLUMNS: tuple[str, ...] = ("user", "item", "timestamp", "rating", "line")


def _is_empty(text: str) -> bool:
    return text == ""


_FIELDS: dict[str, tuple[pl.DataType, Callable[[str], bool]]] = {
    "user": (pl.Int64(), is_int),
    "item": (pl.Int64(), is_int),
    "rating": (pl.Float64(), is_float),
    "timestamp": (pl.Int64(), is_int),
    "file_id": (pl.Int64(), is_int),
    "original_id": (pl.Int64(), is_int),
    "": (pl.String(), _is_empty),  # the gap between the two ':' of a '::' separator
}
"""The type of each field of a fixed format, and the test the line scan applies to it."""


@dataclass(frozen=True)
class Fixed:
    """A format of typed fields in a fixed order; called, it is the format's ``Reader``.

    Attributes:
        separator: The one character between fields.
        expect: What a line holds, for messages.
        fields: Keys of ``_FIELDS`` in file order.
        header: The header line the file must open with; empty: no header.
    """

    separator: str
    expect: str
    fields: tuple[str, ...]
    header: tuple[str, ...] = ()

    def __call__(self, path: Path, source: Source) -> pl.DataFrame:
        df = self.read(path, source.encoding)
        if "timestamp" in df.columns:
            df = _times(df, "'timestamp'", Rows(path, source.encoding))
        return _standardise(df)

    def read(self, path: Path, encoding: str) -> pl.DataFrame:
        """The typed fields of each line of ``path`` (gaps dropped) and ``line``; blank lines are skipped."""
        columns = [f or f"_gap{i}" for i, f in enumerate(self.fields)]
        layout = Layout(
            self.separator, self.expect, tuple(_FIELDS[f][1] for f in self.fields), header=bool(self.header)
        )
        check_file(path, self.expect)
        if self.header and (found := header(path, layout, encoding)) != list(self.header):
            joined = self.separator.join
            raise DataError(f"{path}:1: expected the header '{joined(self.header)}', got '{shorten(joined(found))}'")
        schema = {name: _FIELDS[f][0] for name, f in zip(self.header or columns, self.fields, strict=True)}
        df = read_text(path, layout, encoding, schema=schema).rename(dict(zip(schema, columns, strict=True)))
        # a short line reads as nulls, text in a gap as a value: the line scan names the line
        wrong = [
            pl.col(c).is_null() if f else pl.col(c).is_not_null() for c, f in zip(columns, self.fields, strict=True)
        ]
        if df.select(pl.any_horizontal(wrong).any()).item():
            first_bad_line(path, layout, encoding)
            raise DataError(f"{path}: could not be parsed as {self.expect}")
        return df.drop([c for c, f in zip(columns, self.fields, strict=True) if not f])


def read_id_map(path: Path) -> pl.DataFrame:
    """``file_id original_id`` per line (single space, integers): ``file_id``, ``original_id``, ``line``.

    Raises:
        DataError: A malformed line, or a ``file_id`` listed twice (naming both lines).
    """
    fmt = Fixed(" ", "2 space-separated integer fields 'file_id original_id'", ("file_id", "original_id"))
    df = fmt.read(path, "utf-8")
    dup = df.filter(pl.col("file_id").is_duplicated()).sort("line").head(2)
    if dup.height:
        first, second = dup["line"].to_list()
        raise DataError(f"{path}:{second}: id {dup['file_id'][0]} is mapped again (first on line {first})")
    return df


# --------------------------------------------------------------------------------------------
# Tabular logs and sequences: ids may be text.


def table_header(path: Path, layout: Layout | None, encoding: str, kind: str) -> list[str]:
    """The column names of a csv/tsv table (``layout``) or a parquet file (None); ``kind`` names it in errors."""
    try:
        return list(pl.read_parquet_schema(path)) if layout is None else header(path, layout, encoding)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: could not be read as {kind}: {shorten(exc)}") from exc


def read_table_columns(path: Path, layout: Layout | None, encoding: str, columns: list[str], kind: str) -> pl.DataFrame:
    """``columns`` of a csv/tsv table (``layout``; every field as text) or a parquet file (None), and ``line``
    (Int64: the line of a text file, the 1-based row of a parquet file)."""
    if layout is not None:
        return read_text(path, layout, encoding, columns=columns, infer_schema=False)
    try:
        df = pl.read_parquet(path, columns=columns, row_index_name="line", row_index_offset=1)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: could not be read as {kind}: {shorten(exc)}") from exc
    return df.with_columns(pl.col("line").cast(pl.Int64))


def read_tabular(path: Path, source: Source, separator: str | None) -> pl.DataFrame:
    """A csv/tsv (``separator`` given) or parquet (None) log with columns named by ``source.columns``."""
    mapping = {k: v for k, v in source.column_map.items() if v is not None}
    kind = "parquet" if separator is None else f"{SEPARATOR_NAMES[separator]}-separated"
    expect = f"a {kind} table with a header naming the columns {sorted(set(mapping.values()))}"
    layout = None if separator is None else Layout(separator, expect, header=True, quoted=True)
    check_file(path, expect, text=layout is not None)
    rows = Rows(path, source.encoding, text=layout is not None)
    names = table_header(path, layout, source.encoding, kind)
    for key, col in mapping.items():
        if col not in names:
            found = shorten(names)
            raise DataError(f"{path}: column '{col}' (data.source.columns.{key}) not found; columns found: {found}")
    wanted = list(dict.fromkeys(mapping.values()))
    df = read_table_columns(path, layout, source.encoding, wanted, kind)
    df = df.select("line", *[pl.col(col).alias(key) for key, col in mapping.items()])
    if df.height == 0:
        raise DataError(f"{path}: empty file (no data rows), expected {expect}")
    for key in ("user", "item", "timestamp"):
        if key in mapping and df[key].null_count() > 0:
            if layout is not None:
                first_bad_line(path, layout, source.encoding)  # a short line reads as nulls
            rows.check(df, pl.col(key).is_null(), key, f"missing value in column '{mapping[key]}' ({key})")
    for key in ("user", "item"):
        df = _ids(df, key, f"column '{mapping[key]}' ({key})", source.id_type, rows)
    if "timestamp" in mapping:
        df = _times(df, f"'{mapping['timestamp']}'", rows)
    if "rating" in mapping:
        df = _ratings(df, f"'{mapping['rating']}'", rows)
    return _standardise(df)


def read_sequences(path: Path, source: Source) -> pl.DataFrame:
    """One line per user, ``user i1 i2 ...`` (whitespace-separated, items in time order).

    ``line`` numbers the interactions in file order (line by line, left to right), so it orders
    each user's items by position.
    """
    expect = "one line per user 'user item1 item2 ...' (whitespace-separated)"
    layout = Layout("\x1f", expect)  # \x1f (unit separator) never occurs in text: a line is one field
    check_file(path, expect)
    lines = read_text(path, layout, source.encoding, schema={"text": pl.String})
    tokens = pl.col("text").str.extract_all(r"\S+")
    df = (
        lines.lazy()
        .select(pl.col("line").alias("file_line"), tokens.alias("tokens"))
        .filter(pl.col("tokens").list.len() > 1)
        .select(
            "file_line",
            pl.col("tokens").list.first().alias("user"),
            pl.col("tokens").list.slice(1).alias("item"),
        )
        .explode("item")
        .with_row_index("line", offset=1)
        .collect()
    )
    if df.height == 0:
        raise DataError(f"{path}: empty file (no line with a user and an item), expected {expect}")
    for key in ("user", "item"):
        df = _ids(df, key, key, source.id_type, Rows(path, source.encoding), line="file_line")
    return _standardise(df)


# --------------------------------------------------------------------------------------------
# Columns to their standard types.


def _ids(df: pl.DataFrame, key: str, what: str, id_type: str, rows: Rows, line: str = "line") -> pl.DataFrame:
    """Make id column ``key`` Int64 or String, as ``id_type`` says (``auto``: Int64 if every id is one).

    ``what`` names the column and ``rows.at(<column line>)`` a row in messages. Under ``auto`` a
    column of mostly integers with a few other ids (text, or beyond Int64) is read as text with a
    warning; under ``int`` that is an error.
    """
    dtype = df.schema[key]
    check_id_dtype(dtype, what, rows.path)
    text = pl.col(key).cast(pl.String)
    if dtype.is_integer():
        as_int = pl.col(key).cast(pl.Int64, strict=False)  # null: an unsigned id beyond Int64
    else:
        parsed = text.cast(pl.Int64, strict=False)
        as_int = pl.when(parsed.cast(pl.String) == text).then(parsed)  # '007' or '+7' stay text
    if id_type == "str":
        return df.with_columns(text)
    n_other = df.select(as_int.is_null().sum()).item()
    if n_other == 0:
        return df.with_columns(as_int)
    if id_type == "int" or 2 * n_other < df.height:
        row, value = df.lazy().filter(as_int.is_null()).select(line, text).head(1).collect().row(0)
        first = f"{rows.at(row)}: {what}: id '{shorten(value)}' is not a 64-bit integer"
        if id_type == "int":
            raise DataError(f"{first} (data.source.id_type=int)")
        log.warning(
            "%s (%d of %d ids are not), so all its ids are read as text; "
            "set data.source.id_type=str to accept that, or int to make it an error",
            first,
            n_other,
            df.height,
        )
    return df.with_columns(text)


def check_id_dtype(dtype: pl.DataType, what: str, path: Path) -> None:
    """Raise ``DataError`` unless ``dtype`` holds ids (integers or text); ``what`` names the column."""
    if not (dtype.is_integer() or dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)):
        raise DataError(f"{path}: {what} has dtype {dtype}; expected integer or string ids")


def _times(df: pl.DataFrame, what: str, rows: Rows) -> pl.DataFrame:
    """Convert ``timestamp`` to Int64 microseconds since the epoch (``data.timestamps``), naming a bad value's row.

    Logs a warning when its numbers look like more than one unit (seconds among milliseconds).
    """
    parsed = df.with_columns(timestamp_expr(df.schema["timestamp"], what, rows.path).alias("parsed"))
    check_parsed(parsed, "parsed", "timestamp", what, rows)
    warn_mixed_units(unit_counts(df["timestamp"]), what, rows.path)
    return parsed.drop("timestamp").rename({"parsed": "timestamp"})


def _ratings(df: pl.DataFrame, what: str, rows: Rows) -> pl.DataFrame:
    dtype = df.schema["rating"]
    if dtype.is_numeric():
        return df.with_columns(pl.col("rating").cast(pl.Float64))
    as_float = pl.col("rating").cast(pl.String).cast(pl.Float64, strict=False)
    rows.check(
        df, as_float.is_null() & pl.col("rating").is_not_null(), "rating", f"expected a number in rating column {what}"
    )
    return df.with_columns(as_float)


def _standardise(df: pl.DataFrame) -> pl.DataFrame:
    """The standard columns in their order and types; ``timestamp`` and ``rating`` null where absent."""
    absent = [pl.lit(None).alias(c) for c in ("timestamp", "rating") if c not in df.columns]
    return df.with_columns(absent).select(
        "user",
        "item",
        pl.col("timestamp").cast(pl.Int64),
        pl.col("rating").cast(pl.Float64),
        pl.col("line").cast(pl.Int64),
    )
