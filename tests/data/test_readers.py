"""Readers: exact frames for tiny files of every format, and a clear error for each bad input."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from omegaconf import OmegaConf

from recsys_attn.data.errors import DataError
from recsys_attn.data.formats import READERS, read_interactions
from recsys_attn.data.readers import OUTPUT_COLUMNS
from recsys_attn.data.sources import Source

SchemaDict = dict[str, type[pl.DataType]]

INT_SCHEMA: SchemaDict = {
    "user": pl.Int64,
    "item": pl.Int64,
    "timestamp": pl.Int64,
    "rating": pl.Float64,
    "line": pl.Int64,
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read(path: Path, fmt: str, **kw: object) -> pl.DataFrame:
    return read_interactions(path, Source(name="t", format=fmt, path=str(path), **kw))  # type: ignore[arg-type]


S = 1_000_000
"""Microseconds per second: readers give timestamps in microseconds since the epoch."""


def frame(rows: list[tuple[Any, ...]], schema: SchemaDict = INT_SCHEMA) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


# ------------------------------------------------------------------------------------------ happy


def test_user_item_reads_ids_in_line_order_without_time(tmp_path: Path) -> None:
    path = write(tmp_path, "log.txt", "1 10\n1 5\n\n2 3\n")  # blank line 3 is skipped
    got = read(path, "user_item")
    expected = frame([(1, 10, None, None, 1), (1, 5, None, None, 2), (2, 3, None, None, 4)])
    assert got.equals(expected)
    assert got.schema == pl.Schema(INT_SCHEMA)
    assert tuple(got.columns) == OUTPUT_COLUMNS


def test_user_item_accepts_crlf_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_bytes(b"1 10\r\n2 5\r\n")
    assert read(path, "user_item")["item"].to_list() == [10, 5]


def test_movielens_100k(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    expected = frame([(196, 242, 881250949 * S, 3.0, 1), (186, 302, 891717742 * S, 3.0, 2)])
    assert read(path, "movielens_100k").equals(expected)


def test_movielens_dat_splits_on_double_colon(tmp_path: Path) -> None:
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3.5::978302109\n")
    expected = frame([(1, 1193, 978300760 * S, 5.0, 1), (1, 661, 978302109 * S, 3.5, 2)])
    assert read(path, "movielens_dat").equals(expected)


def test_movielens_csv(tmp_path: Path) -> None:
    text = "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,4.0,1112484676\n"
    path = write(tmp_path, "ratings.csv", text)
    expected = frame([(1, 2, 1112486027 * S, 3.5, 2), (1, 29, 1112484676 * S, 4.0, 3)])
    assert read(path, "movielens_csv").equals(expected)


def test_csv_maps_columns_and_keeps_string_ids(tmp_path: Path) -> None:
    text = "ts,uid,extra,iid\n20,alice,x,007\n10,bob,y,42\n"
    path = write(tmp_path, "log.csv", text)
    columns = {"user": "uid", "item": "iid", "timestamp": "ts", "rating": None}
    got = read(path, "csv", columns=columns)
    schema: SchemaDict = {**INT_SCHEMA, "user": pl.String, "item": pl.String}
    # '007' is not a canonical integer, so item ids stay strings (no '007' == '7' merge)
    assert got.equals(frame([("alice", "007", 20 * S, None, 2), ("bob", "42", 10 * S, None, 3)], schema))


def test_csv_integer_ids_become_int64_and_datetimes_epoch_microseconds(tmp_path: Path) -> None:
    text = "user,item,when,stars\n3,7,2020-01-01 00:00:00,4\n1,2,2020-01-02T00:00:10,2.5\n"
    path = write(tmp_path, "log.csv", text)
    got = read(path, "csv", columns={"timestamp": "when", "rating": "stars"})
    t0 = int(datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp()) * S
    assert got.equals(frame([(3, 7, t0, 4.0, 2), (1, 2, t0 + 86410 * S, 2.5, 3)]))


def test_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "log.tsv", "u\ti\tt\n1\t2\t5\n")
    got = read(path, "tsv", columns={"user": "u", "item": "i", "timestamp": "t"})
    assert got.equals(frame([(1, 2, 5 * S, None, 2)]))


def test_parquet_rows_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "u": [5, 4],
            "i": ["a", "b"],
            "t": [datetime(1970, 1, 1, 0, 1), datetime(1970, 1, 1)],
            "r": [1, 2],
        }
    ).write_parquet(path)
    got = read(path, "parquet", columns={"user": "u", "item": "i", "rating": "r"})
    schema: SchemaDict = {**INT_SCHEMA, "item": pl.String}
    assert got.equals(frame([(5, "a", None, 1.0, 1), (4, "b", None, 2.0, 2)], schema))
    got = read(path, "parquet", columns={"user": "u", "item": "i", "timestamp": "t"})
    assert got["timestamp"].to_list() == [60 * S, 0]


def test_sequences_number_items_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "seq.txt", "u1 3 1  2\n\nu2\t5\nu3\n")  # u3 has no items: no rows
    got = read(path, "sequences")
    schema: SchemaDict = {**INT_SCHEMA, "user": pl.String}
    expected = frame(
        [
            ("u1", 3, None, None, 1),
            ("u1", 1, None, None, 2),
            ("u1", 2, None, None, 3),
            ("u2", 5, None, None, 4),
        ],
        schema,
    )
    assert got.equals(expected)


def test_every_format_is_registered() -> None:
    formats = {"user_item", "movielens_100k", "movielens_dat", "movielens_csv", "csv", "tsv"}
    assert formats | {"parquet", "sequences"} == set(READERS)


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        ("1 2\n3 x\n", 2, "3 x"),  # non-integer id
        ("1 2\n3 4 5\n", 2, "3 4 5"),  # too many fields
        ("1 2\n3 4\n7\n", 3, "7"),  # too few fields
        ("1 2\n1\t2\n", 2, "1\t2"),  # wrong separator
        ("1 2\n1 2 \n", 2, "1 2 "),  # trailing space
        ("1 2.5\n", 1, "1 2.5"),  # float id
    ],
)
def test_user_item_bad_line_is_named(tmp_path: Path, text: str, line: int, shown: str) -> None:
    path = write(tmp_path, "log.txt", text)
    expected = f"{path}:{line}: expected 2 space-separated integer fields 'user item', got '{shown}'"
    with pytest.raises(DataError) as err:
        read(path, "user_item")
    assert str(err.value) == expected


@pytest.mark.parametrize("fmt", ["user_item", "movielens_100k", "movielens_dat", "sequences"])
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path, "empty.txt", "")
    with pytest.raises(DataError, match=rf"^{path}: empty file, expected "):
        read(path, fmt)


def test_blank_lines_only_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "blank.txt", "\n\n")
    with pytest.raises(DataError, match=rf"^{path}: empty file, expected 2 space-separated"):
        read(path, "user_item")


def test_movielens_100k_wrong_field_count(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t2\t3\t4\n1\t2\t3\n")
    with pytest.raises(DataError, match=rf"^{path}:2: expected 4 tab-separated .* got '1\t2\t3'$"):
        read(path, "movielens_100k")


@pytest.mark.parametrize(
    ("text", "shown"),
    [("1::2::3::4\n1::2::3\n", "1::2::3"), ("1::2::3::4\n1:2::3::4\n", "1:2::3::4")],
)
def test_movielens_dat_bad_line(tmp_path: Path, text: str, shown: str) -> None:
    path = write(tmp_path, "ratings.dat", text)
    with pytest.raises(DataError, match=rf"^{path}:2: expected 4 '::'-separated .* got '{shown}'$"):
        read(path, "movielens_dat")


def test_movielens_csv_wrong_header(tmp_path: Path) -> None:
    path = write(tmp_path, "ratings.csv", "user,movieId,rating,timestamp\n1,2,3,4\n")
    expected = f"{path}:1: expected the header 'userId,movieId,rating,timestamp', got 'user,movieId,rating,timestamp'"
    with pytest.raises(DataError) as err:
        read(path, "movielens_csv")
    assert str(err.value) == expected


def test_movielens_csv_bad_rating(tmp_path: Path) -> None:
    path = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,good,4\n")
    with pytest.raises(DataError, match=rf"^{path}:3: expected 4 comma-separated .* got '1,2,good,4'$"):
        read(path, "movielens_csv")


def test_csv_missing_column_names_file_column_and_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user_id,item\n1,2\n")
    expected = f"{path}: column 'user' (data.source.columns.user) not found; columns found: ['user_id', 'item']"
    with pytest.raises(DataError) as err:
        read(path, "csv")
    assert str(err.value) == expected


def test_csv_missing_value(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item\n1,2\n,3\n")
    expected = f"{path}:3: missing value in column 'user' (user), got ',3'"
    with pytest.raises(DataError) as err:
        read(path, "csv")
    assert str(err.value) == expected


def test_csv_ragged_line(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item\n1,2\n3\n4,5\n")
    expected = f"{path}:3: expected 2 comma-separated fields as in the header 'user,item', got '3'"
    with pytest.raises(DataError) as err:
        read(path, "csv")
    assert str(err.value) == expected


def test_csv_too_many_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item\n1,2\n3,4,5\n")
    with pytest.raises(DataError, match=rf"^{path}:3: expected 2 comma-separated .* got '3,4,5'$"):
        read(path, "csv")


def test_csv_bad_timestamp(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item,t\n1,2,5\n1,3,soon\n")
    with pytest.raises(DataError, match=rf"^{path}:3: column 't': 'soon' is not a timestamp; expected epoch seconds"):
        read(path, "csv", columns={"timestamp": "t"})


def test_csv_header_only_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item\n")
    with pytest.raises(DataError, match=rf"^{path}: empty file \(no data rows\)"):
        read(path, "csv")


def test_parquet_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame({"u": [1], "i": [2]}).write_parquet(path)
    with pytest.raises(DataError, match=r"column 'user' .* not found; columns found: \['u', 'i'\]"):
        read(path, "parquet")


def test_parquet_null_id_names_row(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user": [1, None], "item": [2, 3]}).write_parquet(path)
    with pytest.raises(DataError, match=rf"^{path}: row 2: missing value in column 'user'"):
        read(path, "parquet")


# --------------------------------------------------------------------------------------- Source


def test_unknown_format_lists_known_formats() -> None:
    with pytest.raises(DataError, match=r"format='xml' is unknown; known formats: csv, movielens"):
        Source(name="t", format="xml", path="x")


def test_unknown_columns_key_is_named() -> None:
    with pytest.raises(DataError, match=r"data.source.columns.session is not a known key"):
        Source(name="t", format="csv", path="x", columns={"user": "u", "session": "s"})


def test_columns_accepts_dictconfig_and_copies_to_dict() -> None:
    cfg = OmegaConf.create({"user": "u", "item": "i", "timestamp": None})
    source = Source(name="t", format="csv", path="x", columns=cfg)  # type: ignore[arg-type]
    assert source.columns == {"user": "u", "item": "i", "timestamp": None}
    assert type(source.columns) is dict


def test_bad_name_and_zip_without_member() -> None:
    with pytest.raises(DataError, match=r"data\.source\.name='a/b'"):
        Source(name="a/b", format="csv", path="x")
    with pytest.raises(DataError, match=r"set data\.source\.archive_member"):
        Source(name="t", format="csv", path="x", url="https://h/x.zip")
