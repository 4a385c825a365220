"""Timestamps in every common form, read one way by the data readers and by serving's history tables."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from recsys_attn.data.errors import DataError
from recsys_attn.data.formats import read_interactions
from recsys_attn.data.preprocess import Preparation, preprocess
from recsys_attn.data.sources import Source
from recsys_attn.serving.history_tables import read_table

S = 1_000_000  # microseconds per second
T0 = int(datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp()) * S  # 2020-01-01T00:00:00Z in microseconds
H = 3600 * S


def read_csv(tmp_path: Path, values: list[str], name: str = "log.csv") -> pl.DataFrame:
    """A csv log of user 1 with one item per value of its timestamp column ``t``, read by the data reader."""
    path = tmp_path / name
    path.write_text("user,item,t\n" + "".join(f"1,{i},{v}\n" for i, v in enumerate(values)))
    return read_interactions(path, Source(name="t", format="csv", path=str(path), columns={"timestamp": "t"}))


def read_parquet(tmp_path: Path, column: pl.Series) -> pl.DataFrame:
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user": [1] * len(column), "item": range(len(column)), "t": column}).write_parquet(path)
    return read_interactions(path, Source(name="t", format="parquet", path=str(path), columns={"timestamp": "t"}))


FORMS = [
    ("1577836800", T0),  # epoch seconds
    ("1577836800000", T0),  # milliseconds
    ("1577836800000000", T0),  # microseconds
    ("1577836800000000000", T0),  # nanoseconds
    ("1577836800.25", T0 + S // 4),  # decimal seconds
    ("-86400", -86400 * S),  # before 1970
    ("2020-01-01", T0),
    ("2020-01-01T05:00:00", T0 + 5 * H),  # naive: UTC
    ("2020-01-01 05:00:00", T0 + 5 * H),
    ("2020-01-01T05:00", T0 + 5 * H),
    ("2020-01-01T05:00:00.5", T0 + 5 * H + S // 2),
    ("2020-01-01T05:00:00.123456789", T0 + 5 * H + 123456),  # nanoseconds cut to microseconds
    ("2020-01-01T05:00:00Z", T0 + 5 * H),
    ("2020-01-01T05:00:00.250Z", T0 + 5 * H + S // 4),
    ("2020-01-01T05:00:00+05:00", T0),
    ("2020-01-01T05:00:00-01:30", T0 + 6 * H + H // 2),
    ("2020-01-01T05:00:00+0500", T0),
    ("2020-01-01T05:00:00+05", T0),
    ("2020-01-01 05:00:00 UTC", T0 + 5 * H),
    (" 2020-01-01T05:00:00Z ", T0 + 5 * H),  # spaces around a value
]


@pytest.mark.parametrize(("text", "expected"), FORMS)
def test_each_text_form_in_a_csv(tmp_path: Path, text: str, expected: int) -> None:
    assert read_csv(tmp_path, [text])["timestamp"].to_list() == [expected]


def test_forms_mixed_in_one_column_each_read_as_itself(tmp_path: Path) -> None:
    got = read_csv(tmp_path, [text for text, _ in FORMS])
    assert got["timestamp"].to_list() == [expected for _, expected in FORMS]


@pytest.mark.parametrize(("text", "expected"), FORMS)
def test_each_text_form_in_a_parquet_string_column(tmp_path: Path, text: str, expected: int) -> None:
    assert read_parquet(tmp_path, pl.Series([text]))["timestamp"].to_list() == [expected]


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pl.Series([1577836800, 1577836801], dtype=pl.Int32), [T0, T0 + S]),
        (pl.Series([1577836800000, 1577836800001]), [T0, T0 + 1000]),  # milliseconds
        (pl.Series([1577836800000000000], dtype=pl.UInt64), [T0]),  # nanoseconds, unsigned
        (pl.Series([1577836800.5]), [T0 + S // 2]),  # float seconds
        (pl.Series([datetime(2020, 1, 1, 5)]), [T0 + 5 * H]),  # naive: UTC
        (pl.Series([datetime(2020, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))]), [T0]),
        (pl.Series([datetime(2020, 1, 1, 5)]).dt.replace_time_zone("Asia/Tokyo"), [T0 - 4 * H]),
        (pl.Series([datetime(2020, 1, 1)], dtype=pl.Datetime("ns")), [T0]),
        (pl.Series([date(2020, 1, 2)]), [T0 + 24 * H]),
    ],
)
def test_each_typed_parquet_column(tmp_path: Path, column: pl.Series, expected: list[int]) -> None:
    assert read_parquet(tmp_path, column)["timestamp"].to_list() == expected


def test_fixed_formats_read_epoch_seconds_as_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\n")
    got = read_interactions(path, Source(name="t", format="movielens_dat", path=str(path)))
    assert got["timestamp"].to_list() == [978300760 * S]


# ----------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", ["soon", "2020-02-30", "2020-01-01T24:00:00", "2020-13-01", "1e9", "12:00", "nan"])
def test_a_malformed_value_names_file_line_column_and_the_forms(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "log.csv"
    with pytest.raises(DataError) as err:
        read_csv(tmp_path, ["2020-01-01T05:00:00Z", bad])
    assert str(err.value) == (
        f"{path}:3: column 't': '{bad}' is not a timestamp; expected epoch seconds, ms, us or ns (unit told by size) "
        "or ISO-8601 2020-01-01[T05:00:00[.123]][Z|+05:00] (no zone: UTC)"
    )


def test_a_malformed_parquet_value_names_its_row(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"log.parquet: row 2: column 't': 'yesterday' is not a timestamp; expected"):
        read_parquet(tmp_path, pl.Series(["2020-01-01", "yesterday"]))


def test_an_integer_beyond_64_bits_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"log.csv:2: column 't': '99999999999999999999' is not a timestamp"):
        read_csv(tmp_path, ["99999999999999999999"])


def test_a_column_of_another_dtype_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"log.parquet: column 't' has dtype Boolean; expected timestamps: epoch"):
        read_parquet(tmp_path, pl.Series([True]))


# ------------------------------------------------------------------------------------- mixed units


def test_a_column_mixing_units_warns_with_counts_and_orders_by_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # seconds with one millisecond value among them: read each in its unit, the order is by time
    values = ["1577836802", "1577836801000", "1577836800", "1577836803"]
    with caplog.at_level(logging.WARNING, logger="recsys_attn.data.timestamps"):
        raw = read_csv(tmp_path, values)
    path = tmp_path / "log.csv"
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: column 't' mixes timestamp units (3 look like seconds, 1 look like milliseconds of 4 numbers); "
        "each is read in the unit its size says (below 1e11: seconds, below 1e14: milliseconds, below 1e17: "
        "microseconds, else nanoseconds): check the column, the order of each user's items follows it"
    ]
    assert raw["timestamp"].to_list() == [T0 + 2 * S, T0 + S, T0, T0 + 3 * S]
    prepared = preprocess(raw, Preparation(), "t")
    assert prepared.interactions["item_idx"].to_list() == [3, 2, 1, 4]  # items 2, 1, 0, 3 in time order


def test_one_unit_and_date_times_do_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="recsys_attn.data.timestamps"):
        read_csv(tmp_path, ["1577836800000", "1577836801000", "2020-01-01T00:00:02Z"])
        read_parquet(tmp_path, pl.Series([1577836800, 1577836801]))
    assert caplog.records == []


def test_milliseconds_keep_their_sub_second_order(tmp_path: Path) -> None:
    raw = read_csv(tmp_path, ["1577836800900", "1577836800100", "1577836800500"])
    prepared = preprocess(raw, Preparation(), "t")
    assert prepared.interactions["item_idx"].to_list() == [2, 3, 1]


# ------------------------------------------------------------------------- serving's history tables


def history(path: Path, values: list[str]) -> Path:
    rows = [f"a,{i},{v}" for i, v in reversed(list(enumerate(values)))]  # newest first in the file
    path.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("part_rows", [None, 2])  # grouped in memory, or split into buckets on disk
def test_history_tables_read_zone_forms_in_time_order(tmp_path: Path, part_rows: int | None) -> None:
    values = ["2020-01-01T05:00:00+05:00", "2020-01-01T00:30:00Z", "2020-01-01T01:00:00", "1577840400500"]
    path = history(tmp_path / "h.csv", values)
    (block,) = read_table(path, ",", 10, part_rows=part_rows)
    assert block["items"].to_list() == [["0", "1", "2", "3"]]


@pytest.mark.parametrize("part_rows", [None, 2])
def test_history_tables_warn_about_mixed_units(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, part_rows: int | None
) -> None:
    path = history(tmp_path / "h.csv", ["1577836800", "1577836801", "1577836802000"])
    with caplog.at_level(logging.WARNING, logger="recsys_attn.data.timestamps"):
        (block,) = read_table(path, ",", 10, part_rows=part_rows)
    assert block["items"].to_list() == [["0", "1", "2"]]
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{path}: column 'timestamp' mixes timestamp units (2 look like seconds, 1 look like ")


def test_history_tables_name_a_malformed_value(tmp_path: Path) -> None:
    path = history(tmp_path / "h.csv", ["2020-01-01T05:00:00Z", "2020-01-01T05:00:00+25:00"])
    with pytest.raises(DataError, match=r"h.csv:2: column 'timestamp': '2020-01-01T05:00:00\+25:00' is not a time"):
        list(read_table(path, ",", 10))
