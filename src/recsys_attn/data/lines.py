"""Delimited text read strictly: the one reader of every text format, and the one line scan that names a bad line.

Parsing is vectorised polars; only when it fails does the plain line scan run, to name the first bad line.
Text is decoded strictly: an undecodable byte is an error naming its line, never a replacement character
that would merge distinct ids. Every error is one short line naming the file (and line).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recsys_attn.data.errors import DataError, shorten

SEPARATOR_NAMES = {",": "comma", "\t": "tab", " ": "space"}

_INT_RE = re.compile(r"^-?\d+$")
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_INT64 = (-(2**63), 2**63 - 1)
_HEAD_BYTES = 1 << 16  # read up front: is the file readable, non-empty, with LF or CRLF line ends?


def is_int(text: str) -> bool:
    """A decimal integer that fits in Int64."""
    return bool(_INT_RE.match(text)) and len(text) <= 20 and _INT64[0] <= int(text) <= _INT64[1]


def is_float(text: str) -> bool:
    return bool(_FLOAT_RE.match(text))


@dataclass(frozen=True)
class Layout:
    """How the lines of a delimited text file split into fields.

    Attributes:
        separator: The one character between fields.
        expect: What the file holds, for messages (``2 space-separated integer fields 'user item'``).
        checks: A test of each field in file order (fixed formats); empty: as many fields as the header names,
            or any number of fields without a header.
        header: The first line names the columns.
        quoted: Fields may be quoted (``"a,b"``), as in csv and tsv.
    """

    separator: str
    expect: str
    checks: tuple[Callable[[str], bool], ...] = ()
    header: bool = False
    quoted: bool = False


def check_file(path: Path, expect: str, text: bool = True) -> None:
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


def decoded_lines(path: Path, encoding: str, errors: str = "strict") -> Iterator[tuple[int, str]]:
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


def line_text(path: Path, lineno: int, encoding: str) -> str:
    """Line ``lineno`` of ``path`` (undecodable bytes replaced), to quote in an error."""
    return next((text for n, text in decoded_lines(path, encoding, "replace") if n == lineno), "")


@dataclass(frozen=True)
class Rows:
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
            shown = line_text(self.path, line, self.encoding) if self.text else value
            got = "" if shown is None else f", got '{shorten(shown)}'"
            raise DataError(f"{self.at(line)}: {problem}{got}")


def header(path: Path, layout: Layout, encoding: str) -> list[str]:
    """The column names on the first line of ``path``."""
    return _read_csv(path, layout, encoding, n_rows=0, infer_schema=False, quote_char='"').columns


def read_text(path: Path, layout: Layout, encoding: str, **options: Any) -> pl.DataFrame:
    """Read ``path`` with polars (``options`` as for ``pl.read_csv``): its columns and ``line``, blank lines dropped.

    ``line`` is the 1-based line number of each row in the file.

    Raises:
        DataError: An undecodable byte, a line that does not fit ``layout`` (named by ``first_bad_line``), any
            other parse failure, or no data row.
    """
    try:
        df = _read_csv(path, layout, encoding, row_index_name="line", row_index_offset=1 + layout.header, **options)
    except pl.exceptions.PolarsError as exc:
        first_bad_line(path, layout, encoding)
        raise DataError(f"{path}: could not be parsed as {layout.expect}: {shorten(exc)}") from exc
    values = [c for c in df.columns if c != "line"]
    df = df.filter(~pl.all_horizontal(pl.col(values).is_null()))  # blank lines
    if df.height == 0:
        raise DataError(f"{path}: empty file{' (no data rows)' if layout.header else ''}, expected {layout.expect}")
    return df.with_columns(pl.col("line").cast(pl.Int64))


def first_bad_line(path: Path, layout: Layout, encoding: str) -> None:
    """Raise ``DataError`` for the first line of ``path`` that does not split into ``layout``'s fields.

    A plain scan, run once a vectorised read has failed, to name the line at fault. Blank lines are skipped
    as the reader skips them; a file of nothing else is reported empty.
    """
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # a long field (a review text) is no error here; restored below
    try:
        records = _records(path, layout, encoding)
        expect, content = layout.expect, False
        n_fields: int | None = len(layout.checks) or None  # None: any number
        if layout.header:
            names = next(records, (1, []))[1] or []
            if not layout.checks:
                n_fields = len(names)
                kind = f"{n_fields} {SEPARATOR_NAMES[layout.separator]}-separated fields"
                expect = f"{kind} as in the header '{shorten(layout.separator.join(names))}'"
        for line, fields in records:
            if fields == []:  # a blank line
                continue
            content = True
            checked = zip(layout.checks, fields or [], strict=False)  # no checks: any values
            if fields is not None and n_fields in (None, len(fields)) and all(ok(f) for ok, f in checked):
                continue
            too_big = [f for f in fields or [] if _INT_RE.match(f) and not is_int(f)]
            if too_big and len(fields or []) == n_fields:
                raise DataError(f"{path}:{line}: '{shorten(too_big[0])}' does not fit in 64 bits; expected {expect}")
            raise DataError(f"{path}:{line}: expected {expect}, got '{shorten(line_text(path, line, encoding))}'")
    finally:
        csv.field_size_limit(limit)
    if not content:
        raise DataError(f"{path}: empty file, expected {expect}")


def _records(path: Path, layout: Layout, encoding: str) -> Iterator[tuple[int, list[str] | None]]:
    """``(line number, fields)`` of each record of ``path``; a line that cannot be split (None) ends them."""
    reader = csv.reader(
        (text + "\n" for _, text in decoded_lines(path, encoding)),
        delimiter=layout.separator,
        quoting=csv.QUOTE_MINIMAL if layout.quoted else csv.QUOTE_NONE,
    )
    try:
        for fields in reader:
            yield reader.line_num, fields
    except csv.Error:  # a stray CR inside a line, say
        yield reader.line_num, None


def _read_csv(path: Path, layout: Layout, encoding: str, **options: Any) -> pl.DataFrame:
    """``pl.read_csv`` of ``layout``'s separator and quoting, decoding strictly with ``encoding``.

    Raises:
        DataError: A byte that is not valid ``encoding``, naming its line; other polars errors propagate.
    """
    polars_encoding = "utf8" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        quoting = {
            "separator": layout.separator,
            "has_header": layout.header,
            "quote_char": '"' if layout.quoted else None,
        }
        return pl.read_csv(path, encoding=polars_encoding, **{**quoting, **options})
    except (pl.exceptions.ComputeError, UnicodeDecodeError) as exc:
        if isinstance(exc, pl.exceptions.ComputeError) and "utf-8" not in str(exc):
            raise
        for _ in decoded_lines(path, encoding):  # raises at the first undecodable line
            pass
        raise
