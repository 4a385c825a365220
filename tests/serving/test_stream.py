"""Streamed output: one Parquet row group per frame, metadata, CSV, and nothing at all after a failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from recsys_attn.serving.stream import write_stream

SCHEMA: dict[str, pl.DataType] = {"user_id": pl.Int64(), "rank": pl.Int32(), "score": pl.Float32()}


def frames(n: int) -> list[pl.DataFrame]:
    return [pl.DataFrame({"user_id": [i, i], "rank": [0, 1], "score": [1.0, 0.5]}, schema=SCHEMA) for i in range(n)]


def test_parquet_gets_a_row_group_per_frame_and_the_metadata(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "out.parquet", iter(frames(3)), SCHEMA, {"policy": "greedy", "k": "2"})
    file = pq.ParquetFile(path)
    assert file.num_row_groups == 3 and [file.metadata.row_group(i).num_rows for i in range(3)] == [2, 2, 2]
    meta = file.schema_arrow.metadata
    assert meta[b"policy"] == b"greedy" and meta[b"k"] == b"2"
    assert pl.read_parquet(path).equals(pl.concat(frames(3)))  # streamed = the whole frame written at once
    assert pl.read_parquet(path).schema == pl.Schema(SCHEMA)


def test_csv_streams_one_header_then_the_rows(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "out.csv", iter(frames(3)), SCHEMA)
    assert path.read_text().count("user_id") == 1
    assert pl.read_csv(path, schema=SCHEMA).equals(pl.concat(frames(3)))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_no_frames_give_the_columns_and_no_row(tmp_path: Path, suffix: str) -> None:
    path = write_stream(tmp_path / f"out{suffix}", iter([]), SCHEMA)
    got = pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path, schema=SCHEMA)
    assert got.height == 0 and got.columns == list(SCHEMA)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_failure_half_way_leaves_no_file(tmp_path: Path, suffix: str) -> None:
    def failing() -> Iterator[pl.DataFrame]:
        yield from frames(2)
        raise RuntimeError("scoring failed")

    with pytest.raises(RuntimeError, match="scoring failed"):
        write_stream(tmp_path / "out" / f"recs{suffix}", failing(), SCHEMA)
    assert not (tmp_path / "out").exists()  # no output, no temporary, not even the folder it made
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / f"recs{suffix}").write_text("old")
    with pytest.raises(RuntimeError):
        write_stream(tmp_path / "out" / f"recs{suffix}", failing(), SCHEMA)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"recs{suffix}"]
    assert (tmp_path / "out" / f"recs{suffix}").read_text() == "old"  # a previous file stays as it was


def test_another_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"out.xlsx: must end in one of .parquet, .csv"):
        write_stream(tmp_path / "out.xlsx", iter(frames(1)), SCHEMA)
