"""Readers of tabular logs (csv, tsv, parquet) whose columns ``Source.columns`` names."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from recsys_attn.data.errors import DataError
from recsys_attn.data.readers import (
    _bad_line,
    _ids,
    _is_int,
    _require_content,
    _shown,
    _standardise,
    register,
)

if TYPE_CHECKING:
    from recsys_attn.data.sources import Source


def _line_text(path: Path, lineno: int) -> str:
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        line = next(itertools.islice(fh, lineno - 1, lineno), "")
    return line.rstrip("\r\n")


def _first_bad(df: pl.DataFrame, bad: pl.Expr) -> int | None:
    rows = df.filter(bad).select("line").head(1)
    return None if rows.height == 0 else int(rows.item())


def _times(df: pl.DataFrame, path: Path, what: str, tabular: bool) -> pl.DataFrame:
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
        raise DataError(f"{path}: column {what} has dtype {dtype}; expected integer or date-time timestamps")
    # The first value decides: integers, or date-times (converted to Unix seconds).
    first = df["timestamp"].drop_nulls().head(1).to_list()
    if first and _is_int(first[0].strip()):
        parsed = col.str.strip_chars().cast(pl.Int64, strict=False)
    else:
        parsed = col.str.to_datetime(strict=False).dt.epoch("s")
    line = _first_bad(df, parsed.is_null() & col.is_not_null())
    if line is None:
        return df.with_columns(parsed)
    got = _line_text(path, line) if tabular else ""
    raise DataError(f"{path}:{line}: expected an integer or date-time timestamp in column {what}, got '{got}'")


def _check_tabular_rows(path: Path, separator: str) -> None:
    """Raise for the first csv/tsv line whose field count differs from the header's."""
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=separator)
        header = next(reader, [])
        for fields in reader:
            if fields and len(fields) != len(header):
                line = reader.line_num
                raise _bad_line(
                    path,
                    line,
                    f"{len(header)} {_SEP_NAMES[separator]}-separated fields as in the header "
                    f"'{separator.join(header)}'",
                    _line_text(path, line),
                )


_SEP_NAMES = {",": "comma", "\t": "tab"}


def _read_tabular(path: Path, source: Source, separator: str | None) -> pl.DataFrame:
    """Read a csv (separator given) or parquet (None) file with columns named by the source."""
    mapping = {k: v for k, v in source.column_map.items() if v is not None}
    kind = "parquet" if separator is None else f"{_SEP_NAMES[separator]}-separated"
    expect = f"a {kind} table with a header naming the columns {sorted(set(mapping.values()))}"
    _require_content(path, expect)
    try:
        if separator is None:
            found = pl.read_parquet_schema(path)
            names = list(found)
        else:
            names = pl.read_csv(path, separator=separator, n_rows=0, infer_schema=False, encoding="utf8-lossy").columns
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: could not be read as {kind}: {exc}") from exc
    for key, col in mapping.items():
        if col not in names:
            raise DataError(f"{path}: column '{col}' (data.source.columns.{key}) not found; columns found: {names}")
    wanted = list(dict.fromkeys(mapping.values()))
    try:
        if separator is None:
            df = pl.read_parquet(path, columns=wanted, row_index_name="line", row_index_offset=1)
        else:
            df = pl.read_csv(
                path,
                separator=separator,
                columns=wanted,
                infer_schema=False,
                row_index_name="line",
                row_index_offset=2,
                encoding="utf8-lossy",
            )
    except pl.exceptions.PolarsError as exc:
        if separator is not None:
            _check_tabular_rows(path, separator)
        raise DataError(f"{path}: could not be read as {kind}: {exc}") from exc
    df = df.select("line", *[pl.col(col).alias(key) for key, col in mapping.items()])
    keys = list(mapping)
    if separator is not None:
        df = df.filter(~pl.all_horizontal(pl.col(keys).is_null()))  # blank lines
    if df.height == 0:
        raise DataError(f"{path}: empty file (no data rows), expected {expect}")
    for key in ("user", "item", "timestamp"):
        if key not in mapping:
            continue
        line = _first_bad(df, pl.col(key).is_null())
        if line is not None:
            if separator is not None:
                _check_tabular_rows(path, separator)
            where = f"{path}:{line}" if separator is not None else f"{path}: row {line}"
            got = f", got '{_shown(_line_text(path, line))}'" if separator is not None else ""
            raise DataError(f"{where}: missing value in column '{mapping[key]}' ({key}){got}")
    for key in ("user", "item"):
        df = _ids(df, key, path, f"'{mapping[key]}' ({key})")
    if "timestamp" in mapping:
        df = _times(df, path, f"'{mapping['timestamp']}'", tabular=separator is not None)
    if "rating" in mapping:
        df = _ratings(df, path, f"'{mapping['rating']}'", tabular=separator is not None)
    return _standardise(df)


def _ratings(df: pl.DataFrame, path: Path, what: str, tabular: bool) -> pl.DataFrame:
    dtype = df.schema["rating"]
    if dtype.is_numeric():
        return df.with_columns(pl.col("rating").cast(pl.Float64))
    as_float = pl.col("rating").cast(pl.String).cast(pl.Float64, strict=False)
    line = _first_bad(df, as_float.is_null() & pl.col("rating").is_not_null())
    if line is None:
        return df.with_columns(as_float)
    got = f", got '{_shown(_line_text(path, line))}'" if tabular else ""
    where = f"{path}:{line}" if tabular else f"{path}: row {line}"
    raise DataError(f"{where}: expected a number in rating column {what}{got}")


@register("csv")
def read_csv(path: Path, source: Source) -> pl.DataFrame:
    """Comma-separated file with a header; ``source.columns`` names the columns."""
    return _read_tabular(path, source, ",")


@register("tsv")
def read_tsv(path: Path, source: Source) -> pl.DataFrame:
    """Tab-separated file with a header; ``source.columns`` names the columns."""
    return _read_tabular(path, source, "\t")


@register("parquet")
def read_parquet(path: Path, source: Source) -> pl.DataFrame:
    """Parquet file; ``source.columns`` names the columns; ``line`` is the 1-based row number."""
    return _read_tabular(path, source, None)
