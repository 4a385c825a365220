"""Tabular history files split into buckets, grouped and merged: the blocks of the whole file grouped in memory."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_attn.data.errors import DataError
from recsys_attn.data.readers import read_tabular
from recsys_attn.data.sources import Source
from recsys_attn.serving import history_tables
from recsys_attn.serving.histories import read_histories
from recsys_attn.serving.history_tables import read_table

SEPARATORS = {".csv": ",", ".tsv": "\t", ".parquet": None}
ITEMS = pl.DataFrame({"item_idx": list(range(1, 21)), "item_id": [str(i) for i in range(20)]})
TEXT_USERS = pl.DataFrame({"user_idx": [1], "user_id": ["a"]})


def reference(path: Path, block_users: int) -> list[pl.DataFrame]:
    """The blocks of ``path`` read whole by ``read_tabular`` and grouped in memory: the reader before streaming."""
    separator = SEPARATORS[path.suffix]
    names = pl.read_parquet_schema(path) if separator is None else pl.read_csv(path, separator=separator, n_rows=0)
    columns = {"user": "user_id", "item": "item_id", "timestamp": "timestamp" if "timestamp" in names else None}
    fmt = path.suffix[1:]
    source = Source(name="histories", format=fmt, path=str(path), columns=columns, encoding="utf-8", id_type="str")
    grouped = (
        read_tabular(path, source, separator)
        .lazy()
        .with_columns(pl.col("line").min().over("user").alias("first"))
        .sort(["first", "timestamp", "line"], nulls_last=True)
        .group_by("first", maintain_order=True)
        .agg(pl.col("user").first().alias("user_id"), pl.col("item").alias("items"))
        .select("user_id", "items", pl.col("first").alias("line"))
        .collect()
    )
    return [grouped.slice(offset, block_users) for offset in range(0, grouped.height, block_users)]


def shuffled_log(seed: int, timestamps: bool, n_rows: int = 300, n_users: int = 40) -> pl.DataFrame:
    """Rows of ``n_users`` text user ids in random order; timestamps with ties (file order breaks them)."""
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, n_users, n_rows)],
            "item_id": rng.integers(0, 25, n_rows),  # 20..24: unknown to the model
        }
    )
    return frame.with_columns(timestamp=pl.Series(rng.integers(0, 15, n_rows))) if timestamps else frame


def write(frame: pl.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.write_parquet(path, row_group_size=50)
    else:
        frame.write_csv(path, separator=SEPARATORS[path.suffix] or ",")
    return path


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[int]]]:
    """Small buckets and batches, recording the temporary folders made and the rows of each group in memory."""
    seen: dict[str, list[int]] = {"folders": [], "grouped": []}
    group = history_tables._group
    folder = tempfile.TemporaryDirectory

    def record_group(rows: pl.DataFrame) -> pl.DataFrame:
        seen["grouped"].append(rows.height)
        return group(rows)

    def record_folder(*args: object, **kwargs: object) -> tempfile.TemporaryDirectory[str]:
        seen["folders"].append(1)
        return folder(*args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(history_tables, "PART_ROWS", 40)
    monkeypatch.setattr(history_tables, "BATCH_ROWS", 25)
    monkeypatch.setattr(history_tables, "_group", record_group)
    monkeypatch.setattr(history_tables.tempfile, "TemporaryDirectory", record_folder)
    yield seen


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
@pytest.mark.parametrize("timestamps", [True, False])
@pytest.mark.parametrize("block_users", [1, 2, 3, 64])
def test_split_grouped_and_merged_gives_the_blocks_of_the_whole_file_grouped_in_memory(
    tmp_path: Path, spied: dict[str, list[int]], suffix: str, timestamps: bool, block_users: int
) -> None:
    path = write(shuffled_log(block_users, timestamps), tmp_path / f"h{suffix}")
    blocks = list(read_table(path, SEPARATORS[suffix], block_users))
    expected = reference(path, block_users)
    assert len(blocks) == len(expected) and all(b.equals(e) for b, e in zip(blocks, expected, strict=True))
    assert [len(b) for b in blocks[:-1]] == [block_users] * (len(blocks) - 1)
    assert spied["folders"] == [1]  # the file went through buckets on disk...
    assert len(spied["grouped"]) > 3 and max(spied["grouped"]) < 150  # ...grouped a part at a time, never whole


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_served_blocks_are_the_same_whether_grouped_in_memory_or_through_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = write(shuffled_log(7, timestamps=True), tmp_path / f"h{suffix}")
    whole = list(read_histories(path, TEXT_USERS, ITEMS, 3, max_users=20))
    monkeypatch.setattr(history_tables, "PART_ROWS", 30)
    split = list(read_histories(path, TEXT_USERS, ITEMS, 3, max_users=20))
    assert len(split) == 7 and sum(len(b) for b in split) == 20
    for a, b in zip(whole, split, strict=True):
        assert a.user_ids.equals(b.user_ids)
        for name in ("values", "starts", "ends", "n_unknown"):
            assert getattr(a, name).equal(getattr(b, name))


def test_the_temporary_folder_is_removed_after_reading_when_stopped_early_and_on_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(history_tables, "PART_ROWS", 40)
    monkeypatch.setattr(history_tables, "BATCH_ROWS", 25)
    path = write(shuffled_log(3, timestamps=True), tmp_path / "h.csv")

    def folders() -> list[Path]:
        return list((tmp_path / "tmp").glob("recsys_histories_*"))

    blocks = read_table(path, ",", 4)
    next(blocks)
    assert len(folders()) == 1 and list(folders()[0].glob("*.arrow"))  # the grouped buckets, while read
    list(blocks)
    assert folders() == []
    blocks = read_table(path, ",", 4)
    next(blocks)
    blocks.close()  # a caller stopping early (max_users)
    assert folders() == []
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:250], "u1,3,later", *lines[250:]]) + "\n")
    with pytest.raises(DataError, match=r"h.csv:251: column 'timestamp': 'later' is not a timestamp; expected "):
        next(read_table(path, ",", 4))
    assert folders() == []


@pytest.mark.parametrize(
    ("suffix", "bad", "message"),
    [
        (".csv", "u1,3,soon", "h.csv:{line}: column 'timestamp': 'soon' is not a timestamp; expected epoch seconds"),
        (".csv", "u1,,3", "h.csv:{line}: missing value in column 'item_id' (item), got 'u1,,3'"),
        (".csv", "u1,3", "h.csv:{line}: expected 3 comma-separated fields as in the header"),
        (".csv", "u1,3,4,5", "h.csv:{line}: expected 3 comma-separated fields as in the header"),
        (".tsv", "u1\t\t3", "h.tsv:{line}: missing value in column 'item_id' (item)"),
    ],
)
def test_a_bad_row_in_a_late_batch_is_named_by_its_line_as_the_whole_file_reader_names_it(
    tmp_path: Path, spied: dict[str, list[int]], suffix: str, bad: str, message: str
) -> None:
    path = write(shuffled_log(5, timestamps=True), tmp_path / f"h{suffix}")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:200], "", bad, *lines[200:]]) + "\n")  # a blank line: still counted
    with pytest.raises(DataError) as split:
        list(read_table(path, SEPARATORS[suffix], 2))
    with pytest.raises(DataError) as whole:
        reference(path, 2)
    assert str(split.value) == str(whole.value) == str(whole.value).split("\n")[0]
    assert message.format(line=202) in str(split.value)
    assert spied["grouped"] == []  # nothing grouped before the whole file was checked


def test_a_missing_user_anywhere_is_named_before_an_earlier_missing_item(
    tmp_path: Path, spied: dict[str, list[int]]
) -> None:
    path = write(shuffled_log(2, timestamps=False), tmp_path / "h.csv")
    lines = path.read_text().splitlines()
    lines[20], lines[280] = "u1,", ",5"  # read_tabular checks user ids first
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"h.csv:281: missing value in column 'user_id' \(user\), got ',5'$"):
        list(read_table(path, ",", 2))


def test_a_parquet_row_is_named_by_its_row_number(tmp_path: Path, spied: dict[str, list[int]]) -> None:
    frame = shuffled_log(4, timestamps=True).with_columns(pl.col("timestamp").cast(pl.String))
    later = pl.when(pl.int_range(pl.len()) == 260).then(pl.lit("later")).otherwise("timestamp").alias("timestamp")
    frame = frame.with_columns(later)
    path = write(frame.select("user_id", "item_id", "timestamp"), tmp_path / "h.parquet")
    expected = r"h.parquet: row 261: column 'timestamp': 'later' is not a timestamp; expected .*\(no zone: UTC\)$"
    with pytest.raises(DataError, match=expected):
        list(read_table(path, None, 2))


def test_an_undecodable_byte_names_its_line_and_no_data_setting(tmp_path: Path, spied: dict[str, list[int]]) -> None:
    path = write(shuffled_log(6, timestamps=False), tmp_path / "h.csv")
    path.write_bytes(path.read_bytes() + b"u1,\xff\n")
    with pytest.raises(DataError, match=r"h.csv:302: byte 4 \(0xff\) is not valid utf-8; history files must be UTF-8$"):
        list(read_histories(path, TEXT_USERS, ITEMS, 2))
