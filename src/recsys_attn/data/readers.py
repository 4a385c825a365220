"""Readers that turn a raw interaction file into one standard polars frame.

Every reader returns the columns ``user``, ``item`` (original ids), ``timestamp`` (Int64, null when
the format has none), ``rating`` (Float64, null when absent) and ``line`` (Int64, the 1-based line
of the record in the file, or row number; a stable tie-break for chronological order). Parsing is
vectorised polars; only when it fails does a plain line scan run, to name the first bad line.
Text is decoded strictly with ``Source.encoding``: an undecodable byte is an error naming its line,
never a replacement character that would merge distinct ids.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from recsys_attn.data.errors import DataError, shorten

if TYPE_CHECKING:
    from recsys_attn.data.sources import Source

Reader = Callable[[Path, "Source"], pl.DataFrame]
"""A reader: ``(path, source) -> frame`` with the standard columns."""

OUTPUT_COLUMNS: tuple[str, ...] = ("user", "item", "timestamp", "rating", "line")

_INT_RE = re.compile(r"^-?\d+$")
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_INT64 = (-(2**63), 2**63 - 1)
_HEAD_BYTES = 1 << 16  # read up front: is the file readable, non-empty, with LF or CRLF line ends?


# --------------------------------------------------------------------------------------------
# Reading files: readable, strictly decoded, every error one line naming the file (and line).


def _check_file(path: Path, expect: str, text: bool = True) -> None:
    """Raise ``DataError`` unless ``path`` can be read and is not empty; a text file must not end lines in CR only."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or shorten(exc)})") from None
    if not head:
        raise DataError(f"{path}: empty file, expected {expect}")
    if text and b"\n" not in head and b"\r" in head.rstrip(b"\r"):
        raise DataError(
            f"{path}: lines end in a bare CR (old Mac style); convert the line ends to LF, e.g. tr '\\r' '\\n'"
        )


def _lines(path: Path, encoding: str, errors: str = "strict") -> Iterator[tuple[int, str]]:
    """``(line number, text without its line end)`` of each line of ``path``.

    Raises:
        DataError: With strict ``errors``, a byte that is not valid ``encoding``, naming its line.
    """
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode(encoding, errors)
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: byte {exc.start + 1} (0x{raw[exc.start]:02x}) is not valid {encoding}; "
                    "set data.source.encoding to the file's encoding (e.g. latin-1)"
                ) from None
            yield lineno, text.rstrip("\r\n")


def _line_text(path: Path, lineno: int, encoding: str) -> str:
    """Line ``lineno`` of ``path`` (undecodable bytes replaced), to quote in an error."""
    return next((text for n, text in _lines(path, encoding, "replace") if n == lineno), "")


@dataclass(frozen=True)
class _Rows:
    """Names a row of ``path`` in errors: ``path:line`` in a text file, ``path: row n`` in parquet."""

    path: Path
    encoding: str
    text: bool = True

    def at(self, line: int) -> str:
        return f"{self.path}:{line}" if self.text else f"{self.path}: row {line}"

    def check(self, df: pl.DataFrame, bad: pl.Expr, key: str, problem: str) -> None:
        """Raise ``DataError`` for the first row where ``bad`` holds, quoting its line (or its ``key``)."""
        first = df.lazy().filter(bad).select("line", key).head(1).collect()
        if first.height:
            line, value = first.row(0)
            shown = _line_text(self.path, line, self.encoding) if self.text else value
            got = "" if shown is None else f", got '{shorten(shown)}'"
            raise DataError(f"{self.at(line)}: {problem}{got}")


def _read_csv(path: Path, encoding: str, **options: Any) -> pl.DataFrame:
    """``pl.read_csv`` decoding strictly with ``encoding``; other polars errors propagate to the caller.

    Raises:
        DataError: A byte that is not valid ``encoding``, naming its line.
    """
    polars_encoding = "utf8" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        return pl.read_csv(path, encoding=polars_encoding, **options)
    except (pl.exceptions.ComputeError, UnicodeDecodeError) as exc:
        if isinstance(exc, pl.exceptions.ComputeError) and "utf-8" not in str(exc):
            raise
        for _ in _lines(path, encoding):  # raises at the first undecodable line
            pass
        raise


def _bad_line(path: Path, lineno: int, expect: str, text: str) -> DataError:
    return DataError(f"{path}:{lineno}: expected {expect}, got '{shorten(text)}'")


# --------------------------------------------------------------------------------------------
# Fixed layouts: headerless (or fixed-header) files of int/float fields.


def _is_int(text: str) -> bool:
    """A decimal integer that fits in Int64."""
    return bool(_INT_RE.match(text)) and len(text) <= 20 and _INT64[0] <= int(text) <= _INT64[1]


def _is_float(text: str) -> bool:
    return bool(_FLOAT_RE.match(text))


def _diagnose_fields(
    path: Path,
    split: str,
    checks: Sequence[Callable[[str], bool]],
    expect: str,
    encoding: str,
    skip: int = 0,
) -> None:
    """Scan lines in Python and raise ``DataError`` for the first one that does not parse.

    Blank lines are skipped (as the fast path does); a file of nothing else is reported empty.
    """
    content = False
    for lineno, text in _lines(path, encoding):
        if lineno <= skip or text == "":
            continue
        content = True
        parts = text.split(split)
        if len(parts) != len(checks) or not all(ok(p) for ok, p in zip(checks, parts, strict=True)):
            too_big = [p for p in parts if _INT_RE.match(p) and not _is_int(p)]
            if len(parts) == len(checks) and too_big:
                raise DataError(f"{path}:{lineno}: '{shorten(too_big[0])}' does not fit in 64 bits; expected {expect}")
            raise _bad_line(path, lineno, expect, text)
    if not content:
        raise DataError(f"{path}: empty file, expected {expect}")


def _read_fixed(
    path: Path,
    fields: dict[str, pl.DataType],
    separator: str,
    expect: str,
    checks: Sequence[Callable[[str], bool]],
    encoding: str,
    header: Sequence[str] | None = None,
    required: Sequence[str] | None = None,
    split: str | None = None,
) -> pl.DataFrame:
    """Parse a file of fixed typed fields; return them plus ``line``.

    Blank lines are skipped. When parsing fails, or a ``required`` field (default: all) is null,
    a line scan names the first line that does not split on ``split`` (default: ``separator``)
    into fields passing ``checks``.
    """
    _check_file(path, expect)

    def diagnose() -> None:
        _diagnose_fields(path, split or separator, checks, expect, encoding, skip=0 if header is None else 1)

    if header is not None:
        found = _read_csv(path, encoding, separator=separator, n_rows=0, infer_schema=False).columns
        if found != list(header):
            raise DataError(
                f"{path}:1: expected the header '{separator.join(header)}', got '{shorten(separator.join(found))}'"
            )
        schema = dict(zip(header, fields.values(), strict=True))
    else:
        schema = dict(fields)
    try:
        df = _read_csv(
            path,
            encoding,
            separator=separator,
            has_header=header is not None,
            schema=schema,
            quote_char=None,
            row_index_name="line",
            row_index_offset=1 if header is None else 2,
        )
    except pl.exceptions.PolarsError as exc:
        diagnose()
        raise DataError(f"{path}: could not be parsed as {expect}: {shorten(exc)}") from exc
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


def read_user_item(path: Path, source: Source) -> pl.DataFrame:
    """``user item`` per line, single-space separated ints, each user's lines in time order."""
    expect = "2 space-separated integer fields 'user item'"
    fields: dict[str, pl.DataType] = {"user": pl.Int64(), "item": pl.Int64()}
    return _standardise(_read_fixed(path, fields, " ", expect, [_is_int, _is_int], source.encoding))


def read_id_map(path: Path) -> pl.DataFrame:
    """``file_id original_id`` per line (single space, integers): ``file_id``, ``original_id``, ``line``.

    Raises:
        DataError: A malformed line, or a ``file_id`` listed twice (naming both lines).
    """
    expect = "2 space-separated integer fields 'file_id original_id'"
    fields: dict[str, pl.DataType] = {"file_id": pl.Int64(), "original_id": pl.Int64()}
    df = _read_fixed(path, fields, " ", expect, [_is_int, _is_int], "utf-8")
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


def read_movielens_100k(path: Path, source: Source) -> pl.DataFrame:
    """MovieLens-100K ``u.data``: tab-separated ``user item rating timestamp``, no header."""
    expect = "4 tab-separated fields 'user item rating timestamp' (integers, rating a number)"
    return _standardise(_read_fixed(path, _ML_FIELDS, "\t", expect, _ML_CHECKS, source.encoding))


def read_movielens_dat(path: Path, source: Source) -> pl.DataFrame:
    """MovieLens-1M/10M ``ratings.dat``: ``user::item::rating::timestamp``, no header."""
    expect = "4 '::'-separated fields 'user::item::rating::timestamp'"
    # Split on ':' so polars parses natively; every other field must be the empty gap of '::'.
    fields: dict[str, pl.DataType] = {}
    for i, (name, dtype) in enumerate(_ML_FIELDS.items()):
        fields[name] = dtype
        if i < 3:
            fields[f"_gap{i}"] = pl.String()
    gaps = [name for name in fields if name.startswith("_gap")]
    df = _read_fixed(path, fields, ":", expect, _ML_CHECKS, source.encoding, required=list(_ML_FIELDS), split="::")
    if df.select(pl.any_horizontal(pl.col(gaps).is_not_null().any())).item():
        _diagnose_fields(path, "::", _ML_CHECKS, expect, source.encoding)
        raise DataError(f"{path}: could not be parsed, expected {expect}")
    return _standardise(df.drop(gaps))


def read_movielens_csv(path: Path, source: Source) -> pl.DataFrame:
    """MovieLens ``ratings.csv`` with the header ``userId,movieId,rating,timestamp``."""
    expect = "4 comma-separated fields 'userId,movieId,rating,timestamp'"
    header = ("userId", "movieId", "rating", "timestamp")
    return _standardise(_read_fixed(path, _ML_FIELDS, ",", expect, _ML_CHECKS, source.encoding, header=header))
