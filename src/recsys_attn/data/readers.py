"""Readers that turn a raw interaction file into one standard polars frame.

Every reader returns the columns ``user``, ``item`` (original ids), ``timestamp`` (Int64, null when
the format has none), ``rating`` (Float64, null when absent) and ``line`` (Int64, the 1-based line
of the record in the file, or row number; a stable tie-break for chronological order). Parsing is
vectorised polars; only when it fails does a plain line scan run, to name the first bad line.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from recsys_attn.data.errors import DataError

if TYPE_CHECKING:
    from recsys_attn.data.sources import Source

Reader = Callable[[Path, "Source"], pl.DataFrame]
"""A reader: ``(path, source) -> frame`` with the standard columns."""

READERS: dict[str, Reader] = {}
"""Registry of readers by ``Source.format`` name."""

OUTPUT_COLUMNS: tuple[str, ...] = ("user", "item", "timestamp", "rating", "line")

_INT_RE = re.compile(r"^-?\d+$")
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_MAX_SHOWN = 200  # characters of an offending line quoted in an error


def register(name: str) -> Callable[[Reader], Reader]:
    """Decorator adding a reader to ``READERS`` under ``name``."""

    def add(reader: Reader) -> Reader:
        READERS[name] = reader
        return reader

    return add


def read_interactions(path: Path, source: Source) -> pl.DataFrame:
    """Read ``path`` with the reader registered for ``source.format``."""
    reader = READERS.get(source.format)
    if reader is None:
        raise DataError(f"data.source.format={source.format!r} is unknown; known formats: {', '.join(sorted(READERS))}")
    return reader(Path(path), source)


# --------------------------------------------------------------------------------------------
# Fixed layouts: headerless (or fixed-header) files of int/float fields.


def _is_int(text: str) -> bool:
    return bool(_INT_RE.match(text))


def _is_float(text: str) -> bool:
    return bool(_FLOAT_RE.match(text))


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _bad_line(path: Path, lineno: int, expect: str, text: str) -> DataError:
    return DataError(f"{path}:{lineno}: expected {expect}, got '{_shown(text)}'")


def _require_content(path: Path, expect: str) -> None:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file, expected {expect}")


def _diagnose_fields(
    path: Path,
    split: Callable[[str], list[str]],
    checks: Sequence[Callable[[str], bool]],
    expect: str,
    skip: int = 0,
) -> None:
    """Scan lines in Python and raise ``DataError`` for the first one that does not parse.

    Blank lines are skipped (as the fast path does); a file of nothing else is reported empty.
    """
    content = False
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno <= skip:
                continue
            text = raw.rstrip("\r\n")
            if text == "":
                continue
            content = True
            parts = split(text)
            if len(parts) != len(checks) or not all(ok(p) for ok, p in zip(checks, parts, strict=True)):
                raise _bad_line(path, lineno, expect, text)
    if not content:
        raise DataError(f"{path}: empty file, expected {expect}")


def _read_fixed(
    path: Path,
    fields: dict[str, pl.DataType],
    separator: str,
    expect: str,
    diagnose: Callable[[], None],
    header: Sequence[str] | None = None,
    required: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Parse a file of fixed typed fields; return them plus ``line``.

    Blank lines are skipped; a null in any ``required`` field (default: all) runs ``diagnose``.
    """
    _require_content(path, expect)
    if header is not None:
        found = pl.read_csv(path, separator=separator, n_rows=0, infer_schema=False).columns
        if found != list(header):
            raise DataError(
                f"{path}:1: expected the header '{separator.join(header)}', got '{_shown(separator.join(found))}'"
            )
        schema = dict(zip(header, fields.values(), strict=True))
    else:
        schema = dict(fields)
    try:
        df = pl.read_csv(
            path,
            separator=separator,
            has_header=header is not None,
            schema=schema,
            quote_char=None,
            row_index_name="line",
            row_index_offset=1 if header is None else 2,
        )
    except pl.exceptions.PolarsError as exc:
        diagnose()
        raise DataError(f"{path}: could not be parsed as {expect}: {exc}") from exc
    df = df.rename(dict(zip(schema, fields, strict=True)))
    names = list(fields)
    df = df.filter(~pl.all_horizontal(pl.col(names).is_null()))  # blank lines
    if df.height == 0:
        raise DataError(f"{path}: empty file, expected {expect}")
    if df.select(pl.any_horizontal(pl.col(required or names).is_null().any())).item():
        diagnose()
        raise DataError(f"{path}: missing values, expected {expect}")
    return df.with_columns(pl.col("line").cast(pl.Int64))


def _standardise(df: pl.DataFrame) -> pl.DataFrame:
    """Add absent optional columns as nulls and order/cast the standard columns."""
    if "timestamp" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp"))
    if "rating" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias("rating"))
    return df.select(
        "user",
        "item",
        pl.col("timestamp").cast(pl.Int64),
        pl.col("rating").cast(pl.Float64),
        pl.col("line").cast(pl.Int64),
    )


@register("user_item")
def read_user_item(path: Path, source: Source) -> pl.DataFrame:
    """``user item`` per line, single-space separated ints, each user's lines in time order."""
    expect = "2 space-separated integer fields 'user item'"

    def diagnose() -> None:
        _diagnose_fields(path, lambda t: t.split(" "), [_is_int, _is_int], expect)

    df = _read_fixed(path, {"user": pl.Int64(), "item": pl.Int64()}, " ", expect, diagnose)
    return _standardise(df)


_ML_FIELDS: dict[str, pl.DataType] = {
    "user": pl.Int64(),
    "item": pl.Int64(),
    "rating": pl.Float64(),
    "timestamp": pl.Int64(),
}
_ML_CHECKS = [_is_int, _is_int, _is_float, _is_int]


@register("movielens_100k")
def read_movielens_100k(path: Path, source: Source) -> pl.DataFrame:
    """MovieLens-100K ``u.data``: tab-separated ``user item rating timestamp``, no header."""
    expect = "4 tab-separated fields 'user item rating timestamp' (integers, rating a number)"

    def diagnose() -> None:
        _diagnose_fields(path, lambda t: t.split("\t"), _ML_CHECKS, expect)

    return _standardise(_read_fixed(path, _ML_FIELDS, "\t", expect, diagnose))


@register("movielens_dat")
def read_movielens_dat(path: Path, source: Source) -> pl.DataFrame:
    """MovieLens-1M/10M ``ratings.dat``: ``user::item::rating::timestamp``, no header."""
    expect = "4 '::'-separated fields 'user::item::rating::timestamp'"

    def diagnose() -> None:
        _diagnose_fields(path, lambda t: t.split("::"), _ML_CHECKS, expect)

    # Split on ':' so polars parses natively; every other field must be the empty gap of '::'.
    fields: dict[str, pl.DataType] = {}
    for i, (name, dtype) in enumerate(_ML_FIELDS.items()):
        fields[name] = dtype
        if i < 3:
            fields[f"_gap{i}"] = pl.String()
    gaps = [name for name in fields if name.startswith("_gap")]
    df = _read_fixed(path, fields, ":", expect, diagnose, required=list(_ML_FIELDS))
    if df.select(pl.any_horizontal(pl.col(gaps).is_not_null().any())).item():
        diagnose()
        raise DataError(f"{path}: could not be parsed, expected {expect}")
    return _standardise(df.drop(gaps))


@register("movielens_csv")
def read_movielens_csv(path: Path, source: Source) -> pl.DataFrame:
    """MovieLens ``ratings.csv`` with the header ``userId,movieId,rating,timestamp``."""
    expect = "4 comma-separated fields 'userId,movieId,rating,timestamp'"
    header = ("userId", "movieId", "rating", "timestamp")

    def diagnose() -> None:
        _diagnose_fields(path, lambda t: t.split(","), _ML_CHECKS, expect, skip=1)

    return _standardise(_read_fixed(path, _ML_FIELDS, ",", expect, diagnose, header=header))


# --------------------------------------------------------------------------------------------
# User files: csv / tsv / parquet with named columns, and one-line-per-user sequences.


def _line_text(path: Path, lineno: int) -> str:
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        line = next(itertools.islice(fh, lineno - 1, lineno), "")
    return line.rstrip("\r\n")


def _ids(df: pl.DataFrame, col: str, path: Path, what: str) -> pl.DataFrame:
    """Make id column ``col`` Int64 when every value is a canonical integer, else String."""
    dtype = df.schema[col]
    if dtype.is_integer():
        return df.with_columns(pl.col(col).cast(pl.Int64))
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = pl.col(col).cast(pl.String)
        as_int = text.cast(pl.Int64, strict=False)
        canonical = df.select((as_int.cast(pl.String) == text).fill_null(False).all()).item()
        return df.with_columns(as_int if canonical else text)
    raise DataError(f"{path}: column {what} has dtype {dtype}; expected integer or string ids")


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


@register("sequences")
def read_sequences(path: Path, source: Source) -> pl.DataFrame:
    """One line per user, ``user i1 i2 ...`` (whitespace-separated, items in time order).

    ``line`` numbers the interactions in file order (line by line, left to right), so it orders
    each user's items by position.
    """
    expect = "one line per user 'user item1 item2 ...' (whitespace-separated)"
    _require_content(path, expect)
    try:
        # \x1f (unit separator) never occurs in text: each line is read whole.
        lines = pl.read_csv(
            path,
            has_header=False,
            separator="\x1f",
            quote_char=None,
            schema={"text": pl.String},
            encoding="utf8-lossy",
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: could not be read as {expect}: {exc}") from exc
    tokens = pl.col("text").str.extract_all(r"\S+")
    df = (
        lines.lazy()
        .select(tokens.alias("tokens"))
        .filter(pl.col("tokens").list.len() > 1)
        .select(
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
        df = _ids(df, key, path, key)
    return _standardise(df)
