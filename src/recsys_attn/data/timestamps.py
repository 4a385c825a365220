"""Timestamps in every common form, read the one way: Int64 microseconds since 1970-01-01 UTC.

The forms (``ACCEPTED``): a number of seconds, milliseconds, microseconds or nanoseconds since the epoch,
each value's unit told by its size (``UNITS``); an ISO-8601 date (``2020-01-01``) or date-time with ``T`` or
a space, optional seconds and fractional seconds, and a zone ``Z``, ``UTC`` or ``+HH:MM``/``+HHMM``/``+HH``
(none: UTC); a Parquet date or date-time column (naive: UTC). Microseconds keep the order of sub-second
events and fit every form (Int64 microseconds span 292,000 years), so sorting by the result sorts by time.

The data readers (``data.readers``) and serving's history tables (``serving.history_tables``) both parse
with ``timestamp_expr``, check with ``check_parsed`` and ``warn_mixed_units``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from recsys_attn.data.errors import DataError, shorten
from recsys_attn.data.lines import Rows

log = logging.getLogger(__name__)

ACCEPTED = (
    "epoch seconds, ms, us or ns (unit told by size) or ISO-8601 2020-01-01[T05:00:00[.123]][Z|+05:00] (no zone: UTC)"
)
"""The accepted forms, for messages."""

_QUOTED = 40
"""Characters of a bad value quoted at most: a longer one is no timestamp anyway."""

_S, _MS, _US = 10**11, 10**14, 10**17  # the sizes where seconds end, then milliseconds, then microseconds

UNITS: tuple[tuple[str, int | None], ...] = (
    ("seconds", _S),
    ("milliseconds", _MS),
    ("microseconds", _US),
    ("nanoseconds", None),
)
"""``(unit, bound)`` in order of size: a number below ``bound`` in magnitude (and not below
the previous bound) is read in ``unit``. 1e11 seconds is the year 5138 and 1e11 milliseconds March 1973, so epoch
times in either unit are told apart from 1973 to 5138."""

_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)$"
_ISO = (
    r"^(\d{4})-(\d{2})-(\d{2})"  # date
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"  # time, seconds, fraction
    r" ?(?:([Zz]|UTC)|([+-])(\d{2})(?::?(\d{2}))?)?$"  # zone
)
_ISO_GROUPS = ("year", "month", "day", "hour", "minute", "second", "fraction", "utc", "sign", "zone_h", "zone_m")
_US_PER_MINUTE = 60_000_000


def timestamp_expr(dtype: pl.DataType, what: str, path: Path, column: str = "timestamp") -> pl.Expr:
    """``column`` (of ``dtype``) as Int64 microseconds since the epoch, UTC; null where a value is no timestamp.

    Args:
        dtype: The column's dtype in the file: integer, float, date, date-time or text.
        what: The column, quoted, for messages (``'ts'``).
        path: The file, for messages.
        column: The column to read.

    Raises:
        DataError: ``dtype`` cannot hold timestamps (a list, a boolean...).
    """
    col = pl.col(column)
    if dtype.is_integer():
        return _from_integer(col.cast(pl.Int64, strict=False))  # null: an unsigned value beyond Int64
    if dtype.is_float():
        return _from_float(col.cast(pl.Float64))
    if isinstance(dtype, pl.Datetime):  # a zone-aware column counts from the epoch in UTC; a naive one is UTC
        return col.dt.epoch("us")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.epoch("us")
    if dtype not in (pl.String, pl.Categorical) and not isinstance(dtype, pl.Enum):
        raise DataError(f"{path}: column {what} has dtype {dtype}; expected timestamps: {ACCEPTED}")
    text = col.cast(pl.String).str.strip_chars()
    is_int = text.str.contains(r"^[-+]?\d+$")
    return (
        pl.when(is_int)
        .then(_from_integer(text.str.strip_prefix("+").cast(pl.Int64, strict=False)))
        .when(text.str.contains(_NUMBER))
        .then(_from_float(text.cast(pl.Float64, strict=False)))
        .otherwise(_from_iso(text))
    )


def unit_counts(values: pl.Series) -> dict[str, int]:
    """How many of the raw timestamp ``values`` are numbers that look like each of ``UNITS`` (by size).

    Date-times (text or typed) count as no unit; a value that is no number is not counted.
    """
    dtype = values.dtype
    if dtype.is_integer() or dtype.is_float():
        number = values.cast(pl.Float64, strict=False)
    elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = values.cast(pl.String).str.strip_chars()
        number = text.filter(text.str.contains(_NUMBER)).cast(pl.Float64, strict=False)
    else:
        return {}
    size = number.abs()
    counts, low = {}, 0.0
    for unit, bound in UNITS:
        high = float("inf") if bound is None else float(bound)
        counts[unit] = int(((size >= low) & (size < high)).sum())
        low = high
    return {unit: n for unit, n in counts.items() if n}


def add_counts(total: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """The sum of two ``unit_counts`` (of two batches of one column)."""
    return {unit: total.get(unit, 0) + more.get(unit, 0) for unit, _ in UNITS if total.get(unit) or more.get(unit)}


def warn_mixed_units(counts: Mapping[str, int], what: str, path: Path) -> None:
    """Log a warning when ``counts`` (``unit_counts`` of a column) hold numbers of more than one unit.

    Each number is read in the unit its size says, so the order across units is right if the column really
    mixes them; if it does not (a counter that grew past 1e11), the histories it orders are wrong.
    """
    if len(counts) < 2:
        return
    found = ", ".join(f"{n} look like {unit}" for unit, n in counts.items())
    log.warning(
        "%s: column %s mixes timestamp units (%s of %d numbers); each is read in the unit its size says "
        "(below 1e11: seconds, below 1e14: milliseconds, below 1e17: microseconds, else nanoseconds): "
        "check the column, the order of each user's items follows it",
        path,
        what,
        found,
        sum(counts.values()),
    )


def check_parsed(frame: pl.DataFrame, parsed: str, raw: str, what: str, rows: Rows) -> None:
    """Raise ``not_a_timestamp`` for the first row of ``frame`` whose ``raw`` value did not parse (``parsed`` null)."""
    bad = frame.lazy().filter(pl.col(parsed).is_null() & pl.col(raw).is_not_null()).select("line", raw).head(1)
    first = bad.collect()
    if first.height:
        line, value = first.row(0)
        raise not_a_timestamp(rows, line, value, what)


def not_a_timestamp(rows: Rows, line: int, value: object, what: str) -> DataError:
    """The error for ``value`` of column ``what`` (quoted) on ``line``, naming them and the accepted forms."""
    return DataError(
        f"{rows.at(line)}: column {what}: '{shorten(value, _QUOTED)}' is not a timestamp; expected {ACCEPTED}"
    )


def _from_integer(value: pl.Expr) -> pl.Expr:
    """Int64 epoch ``value`` in the unit its size says (``UNITS``), as microseconds, exactly."""

    def below(bound: int) -> pl.Expr:
        return (value > -bound) & (value < bound)

    return (
        pl.when(below(_S))
        .then(value * 1_000_000)
        .when(below(_MS))
        .then(value * 1_000)
        .when(below(_US))
        .then(value)
        .otherwise(value // 1_000)  # nanoseconds
    )


def _from_float(value: pl.Expr) -> pl.Expr:
    """Float epoch ``value`` in the unit its size says (``UNITS``), as microseconds (rounded); null when not finite."""
    size = value.abs()
    as_us = pl.when(size < _S).then(value * 1e6).when(size < _MS).then(value * 1e3).when(size < _US).then(value)
    finite = pl.when(value.is_finite()).then(as_us.otherwise(value / 1e3))  # else: nanoseconds
    return finite.round().cast(pl.Int64, strict=False)


def _from_iso(text: pl.Expr) -> pl.Expr:
    """ISO-8601 ``text`` as microseconds since the epoch, UTC; null when it is not one (or not a real date)."""
    parts = text.str.extract_groups(_ISO)
    field = {name: parts.struct.field(str(i)) for i, name in enumerate(_ISO_GROUPS, start=1)}
    clock = pl.format(
        "{}-{}-{} {}:{}:{}",
        *(field[name] for name in ("year", "month", "day")),
        *(field[name].fill_null("00") for name in ("hour", "minute", "second")),
    )
    local = clock.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False).dt.epoch("us")  # null: no date
    fraction = field["fraction"].fill_null("0").str.pad_end(6, "0").str.slice(0, 6).cast(pl.Int64)
    zone_h = field["zone_h"].cast(pl.Int64).fill_null(0)
    zone_m = field["zone_m"].cast(pl.Int64).fill_null(0)
    sign = pl.when(field["sign"] == "-").then(-1).otherwise(1)
    offset = pl.when((zone_h <= 23) & (zone_m <= 59)).then(sign * (zone_h * 60 + zone_m) * _US_PER_MINUTE)
    return local + fraction - offset  # 05:00+05:00 is 00:00 UTC
