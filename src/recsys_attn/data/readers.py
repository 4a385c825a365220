"""Readers that turn a raw interaction file into one standard polars frame.

Every reader returns the columns ``user``, ``item`` (original ids), ``timestamp`` (Int64, null when
the format has none), ``rating`` (Float64, null when absent) and ``line`` (Int64, the 1-based line
of the record in the file, or row number; a stable tie-break for chronological order). Parsing is
vectorised polars; only when it fails does a plain line scan run, to name the first bad line.
"""

from __future__ import annotations

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


def read_id_map(path: Path) -> pl.DataFrame:
    """``file_id original_id`` per line (single space, integers): ``file_id``, ``original_id``, ``line``.

    Raises:
        DataError: A malformed line, or a ``file_id`` listed twice (naming both lines).
    """
    expect = "2 space-separated integer fields 'file_id original_id'"

    def diagnose() -> None:
        _diagnose_fields(path, lambda t: t.split(" "), [_is_int, _is_int], expect)

    df = _read_fixed(path, {"file_id": pl.Int64(), "original_id": pl.Int64()}, " ", expect, diagnose)
    dup = df.filter(pl.col("file_id").is_duplicated()).sort("line").head(2)
    if dup.height:
        first, second = dup["line"].to_list()
        raise DataError(f"{path}:{second}: id {dup['file_id'][0]} is mapped again (first on line {first})")
    return df


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
# One-line-per-user sequences (csv / tsv / parquet: recsys_attn.data.tabular).


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


# csv / tsv / parquet live in their own module; importing it registers them.
from recsys_attn.data import tabular as _tabular  # noqa: E402, F401
