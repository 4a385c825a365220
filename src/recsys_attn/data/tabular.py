"""Readers of logs whose ids may be text: tabular logs (csv, tsv, parquet) whose columns
``Source.columns`` names, and one-line-per-user ``sequences``."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from recsys_attn.data.errors import DataError, shorten
from recsys_attn.data.readers import (
    _bad_line,
    _check_file,
    _is_int,
    _line_text,
    _lines,
    _read_csv,
    _Rows,
    _standardise,
)

if TYPE_CHECKING:
    from recsys_attn.data.sources import Source

log = logging.getLogger(__name__)

_SEP_NAMES = {",": "comma", "\t": "tab"}


def _ids(df: pl.DataFrame, key: str, what: str, id_type: str, rows: _Rows, line: str = "line") -> pl.DataFrame:
    """Make id column ``key`` Int64 or String, as ``id_type`` says (``auto``: Int64 if every id is one).

    ``what`` names the column and ``rows.at(<column line>)`` a row in messages. Under ``auto`` a
    column of mostly integers with a few other ids (text, or beyond Int64) is read as text with a
    warning; under ``int`` that is an error.
    """
    dtype = df.schema[key]
    text = pl.col(key).cast(pl.String)
    if dtype.is_integer():
        as_int = pl.col(key).cast(pl.Int64, strict=False)  # null: an unsigned id beyond Int64
    elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        parsed = text.cast(pl.Int64, strict=False)
        as_int = pl.when(parsed.cast(pl.String) == text).then(parsed)  # '007' or '+7' stay text
    else:
        raise DataError(f"{rows.path}: {what} has dtype {dtype}; expected integer or string ids")
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


def _times(df: pl.DataFrame, what: str, rows: _Rows) -> pl.DataFrame:
    """Convert ``timestamp`` to Int64 (integers as they are, date-times to Unix seconds)."""
    dtype = df.schema["timestamp"]
    col = pl.col("timestamp")
    if dtype.is_integer():
        return df.with_columns(col.cast(pl.Int64))
    if isinstance(dtype, pl.Datetime):
        return df.with_columns(col.dt.epoch("s"))
    if dtype == pl.Date:
        return df.with_columns(col.cast(pl.Datetime("us")).dt.epoch("s"))
    if dtype != pl.String:
        raise DataError(f"{rows.path}: column {what} has dtype {dtype}; expected integer or date-time timestamps")
    # The first value decides: integers, or date-times (converted to Unix seconds).
    first = df["timestamp"].drop_nulls().head(1).to_list()
    if first and _is_int(first[0].strip()):
        parsed = col.str.strip_chars().cast(pl.Int64, strict=False)
    else:
        parsed = col.str.to_datetime(strict=False).dt.epoch("s")
    bad = parsed.is_null() & col.is_not_null()
    rows.check(df, bad, "timestamp", f"expected an integer or date-time timestamp in column {what}")
    return df.with_columns(parsed)


def _ratings(df: pl.DataFrame, what: str, rows: _Rows) -> pl.DataFrame:
    dtype = df.schema["rating"]
    if dtype.is_numeric():
        return df.with_columns(pl.col("rating").cast(pl.Float64))
    as_float = pl.col("rating").cast(pl.String).cast(pl.Float64, strict=False)
    rows.check(
        df, as_float.is_null() & pl.col("rating").is_not_null(), "rating", f"expected a number in rating column {what}"
    )
    return df.with_columns(as_float)


def _check_tabular_rows(path: Path, separator: str, encoding: str) -> None:
    """Raise for the first csv/tsv line that cannot be decoded or whose field count differs from the header's."""
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # a long field (a review text) is no error here; restored below
    try:
        reader = csv.reader((text + "\n" for _, text in _lines(path, encoding)), delimiter=separator)
        header = next(reader, [])
        for fields in reader:
            if fields and len(fields) != len(header):
                line = reader.line_num
                kind = f"{len(header)} {_SEP_NAMES[separator]}-separated fields"
                expect = f"{kind} as in the header '{shorten(separator.join(header))}'"
                raise _bad_line(path, line, expect, _line_text(path, line, encoding))
    finally:
        csv.field_size_limit(limit)


def _read_tabular(path: Path, source: Source, separator: str | None) -> pl.DataFrame:
    """Read a csv (separator given) or parquet (None) file with columns named by the source."""
    mapping = {k: v for k, v in source.column_map.items() if v is not None}
    kind = "parquet" if separator is None else f"{_SEP_NAMES[separator]}-separated"
    expect = f"a {kind} table with a header naming the columns {sorted(set(mapping.values()))}"
    _check_file(path, expect, text=separator is not None)
    rows = _Rows(path, source.encoding, text=separator is not None)
    try:
        if separator is None:
            names = list(pl.read_parquet_schema(path))
        else:
            names = _read_csv(path, source.encoding, separator=separator, n_rows=0, infer_schema=False).columns
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: could not be read as {kind}: {shorten(exc)}") from exc
    for key, col in mapping.items():
        if col not in names:
            found = shorten(names)
            raise DataError(f"{path}: column '{col}' (data.source.columns.{key}) not found; columns found: {found}")
    wanted = list(dict.fromkeys(mapping.values()))
    try:
        if separator is None:
            df = pl.read_parquet(path, columns=wanted, row_index_name="line", row_index_offset=1)
        else:
            df = _read_csv(
                path,
                source.encoding,
                separator=separator,
                columns=wanted,
                infer_schema=False,
                row_index_name="line",
                row_index_offset=2,
            )
    except pl.exceptions.PolarsError as exc:
        if separator is not None:
            _check_tabular_rows(path, separator, source.encoding)
        raise DataError(f"{path}: could not be read as {kind}: {shorten(exc)}") from exc
    df = df.select("line", *[pl.col(col).alias(key) for key, col in mapping.items()])
    if separator is not None:
        df = df.filter(~pl.all_horizontal(pl.col(list(mapping)).is_null()))  # blank lines
    if df.height == 0:
        raise DataError(f"{path}: empty file (no data rows), expected {expect}")
    for key in ("user", "item", "timestamp"):
        if key in mapping and df[key].null_count() > 0:
            if separator is not None:
                _check_tabular_rows(path, separator, source.encoding)  # a short line reads as nulls
            rows.check(df, pl.col(key).is_null(), key, f"missing value in column '{mapping[key]}' ({key})")
    for key in ("user", "item"):
        df = _ids(df, key, f"column '{mapping[key]}' ({key})", source.id_type, rows)
    if "timestamp" in mapping:
        df = _times(df, f"'{mapping['timestamp']}'", rows)
    if "rating" in mapping:
        df = _ratings(df, f"'{mapping['rating']}'", rows)
    return _standardise(df)


def read_csv(path: Path, source: Source) -> pl.DataFrame:
    """Comma-separated file with a header; ``source.columns`` names the columns."""
    return _read_tabular(path, source, ",")


def read_tsv(path: Path, source: Source) -> pl.DataFrame:
    """Tab-separated file with a header; ``source.columns`` names the columns."""
    return _read_tabular(path, source, "\t")


def read_parquet(path: Path, source: Source) -> pl.DataFrame:
    """Parquet file; ``source.columns`` names the columns; ``line`` is the 1-based row number."""
    return _read_tabular(path, source, None)


# --------------------------------------------------------------------------------------------
# One-line-per-user sequences.


def read_sequences(path: Path, source: Source) -> pl.DataFrame:
    """One line per user, ``user i1 i2 ...`` (whitespace-separated, items in time order).

    ``line`` numbers the interactions in file order (line by line, left to right), so it orders
    each user's items by position.
    """
    expect = "one line per user 'user item1 item2 ...' (whitespace-separated)"
    _check_file(path, expect)
    try:
        # \x1f (unit separator) never occurs in text: each line is read whole.
        lines = _read_csv(
            path,
            source.encoding,
            has_header=False,
            separator="\x1f",
            quote_char=None,
            schema={"text": pl.String},
            row_index_name="file_line",
            row_index_offset=1,
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: could not be read as {expect}: {shorten(exc)}") from exc
    tokens = pl.col("text").str.extract_all(r"\S+")
    df = (
        lines.lazy()
        .select("file_line", tokens.alias("tokens"))
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
        df = _ids(df, key, key, source.id_type, _Rows(path, source.encoding), line="file_line")
    return _standardise(df)
