"""load_prepared(): cache reuse and invalidation, atomic writes, concurrent writers, real data."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import time
from pathlib import Path

import polars as pl
import pytest

from recsys_attn import atomic
from recsys_attn.data import cache
from recsys_attn.data.cache import PREP_VERSION, load_prepared, read_prepared
from recsys_attn.data.errors import DataError
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.preprocess import Preparation
from recsys_attn.data.sources import Source
from recsys_attn.errors import WriteError
from tests.conftest import read_only_folder
from tests.data.conftest import LOG

SOURCE = Source(name="toy", format="user_item", path="log.txt")


def folders(cache_dir: Path) -> list[str]:
    root = cache_dir / "prepared"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def same(a: Prepared, b: Prepared) -> bool:
    return a.interactions.equals(b.interactions) and a.users.equals(b.users) and a.items.equals(b.items)


def test_cold_build_writes_a_complete_folder(data_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    p = load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    (name,) = folders(cache_dir)
    assert name.startswith("toy-") and len(name) == len("toy-") + 12
    folder = cache_dir / "prepared" / name
    assert sorted(f.name for f in folder.iterdir()) == [
        "interactions.parquet",
        "items.parquet",
        "meta.json",
        "users.parquet",
    ]
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["n_users"], meta["n_items"], meta["n_interactions"]) == (3, 3, 7)
    assert meta["config_hash"].startswith(name[len("toy-") :])
    assert meta["prep_version"] == PREP_VERSION
    assert meta["source"]["format"] == "user_item"
    assert meta["preparation"]["dedup"] is True
    assert "created_at" in meta
    assert p.meta["cache_path"] == str(folder)
    assert same(p, read_prepared(folder))


def test_second_call_reuses_the_cache(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache_dir = tmp_path / "cache"
    first = load_prepared(SOURCE, Preparation(), data_dir, cache_dir)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(cache, "preprocess", fail)
    with caplog.at_level(logging.INFO):
        second = load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    assert "reusing prepared cache" in caplog.text
    assert same(first, second)
    assert second.meta["cache_path"] == first.meta["cache_path"]


def test_config_change_rebuilds_and_says_so(data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache_dir = tmp_path / "cache"
    load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    with caplog.at_level(logging.INFO):
        p = load_prepared(SOURCE, Preparation(min_user_interactions=3), data_dir, cache_dir)
    assert "config or input changed" in caplog.text
    assert len(folders(cache_dir)) == 2
    assert p.n_interactions == 3  # only user 1 has 3 interactions


def test_source_change_and_input_change_rebuild(data_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    other = Source(name="toy", format="sequences", path="log.txt")
    load_prepared(other, Preparation(), data_dir, cache_dir)
    assert len(folders(cache_dir)) == 2
    path = data_dir / "log.txt"
    path.write_text(LOG + "4 4\n")
    p = load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    assert len(folders(cache_dir)) == 3
    assert p.n_users == 4
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same size
    load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    assert len(folders(cache_dir)) == 4


def test_failed_write_leaves_nothing_a_later_run_trusts(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    real_write = pl.DataFrame.write_parquet
    calls = {"n": 0}

    def flaky_write(self: pl.DataFrame, file: Path, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # interactions written, users not: an interrupted preparation
            raise OSError("disk full")
        real_write(self, file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.DataFrame, "write_parquet", flaky_write)
    with pytest.raises(OSError, match="disk full"):
        load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    assert folders(cache_dir) == []  # no final folder and no temporary one left
    monkeypatch.undo()
    p = load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    assert p.n_interactions == 7


def test_stale_temp_folder_is_ignored_and_cleaned(data_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    p = load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    final = Path(p.meta["cache_path"])
    # simulate a killed run: a half-written temp folder, old, next to where a new build goes
    stale = final.parent / f"toy-000000000000{atomic.TMP_MARK}abc"
    stale.mkdir()
    (stale / "interactions.parquet").write_bytes(b"partial")
    old = time.time() - 2 * atomic.STALE_TEMP_S
    os.utime(stale, (old, old))
    fresh = final.parent / f"toy-111111111111{atomic.TMP_MARK}def"  # maybe a live writer
    fresh.mkdir()
    load_prepared(SOURCE, Preparation(min_item_interactions=1), data_dir, cache_dir)
    names = folders(cache_dir)
    assert stale.name not in names
    assert fresh.name in names
    assert len([n for n in names if atomic.TMP_MARK not in n]) == 2


def test_destination_written_meanwhile_is_kept(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = tmp_path / "cache"
    real_preprocess = cache.preprocess

    def racing_preprocess(*args: object, **kwargs: object) -> Prepared:
        # another rank finishes the same cache while this one is still preparing
        monkeypatch.setattr(cache, "preprocess", real_preprocess)
        load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
        return real_preprocess(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "preprocess", racing_preprocess)
    p = load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    (name,) = folders(cache_dir)  # one folder, own temp discarded
    assert same(p, read_prepared(cache_dir / "prepared" / name))


def test_a_read_only_cache_is_one_line_naming_the_folder(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self == cache_dir or cache_dir in self.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(WriteError) as err:
        load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    message = str(err.value)
    assert message.startswith(f"{cache_dir / 'prepared'}/toy-")
    assert message.endswith(": cannot write (Read-only file system)") and "\n" not in message


def test_a_cache_folder_without_write_permission_is_one_line(data_dir: Path, tmp_path: Path) -> None:
    cache_dir = read_only_folder(tmp_path / "cache")
    try:
        with pytest.raises(WriteError, match=r"/prepared/toy-[0-9a-f]{12}: cannot write \(Permission denied\)$"):
            load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    finally:
        cache_dir.chmod(0o755)
    assert list(cache_dir.iterdir()) == []


def _worker(data_dir: str, cache_dir: str) -> int:
    return load_prepared(SOURCE, Preparation(), data_dir, cache_dir).n_interactions


@pytest.mark.slow
def test_concurrent_processes_share_one_cache(data_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        counts = pool.starmap(_worker, [(str(data_dir), str(cache_dir))] * 3)
    assert counts == [7, 7, 7]
    (name,) = folders(cache_dir)
    assert read_prepared(cache_dir / "prepared" / name).n_interactions == 7


def test_unreadable_cache_says_to_delete_it(data_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    p = load_prepared(SOURCE, Preparation(), data_dir, cache_dir)
    folder = Path(p.meta["cache_path"])
    (folder / "items.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match=rf"prepared cache {folder} is unreadable .* delete"):
        load_prepared(SOURCE, Preparation(), data_dir, cache_dir)


@pytest.mark.parametrize(
    ("name", "fmt", "path", "counts"),
    [
        ("ml-1m", "user_item", "ml-1m/ml-1m.txt", (6040, 3416, 999_611)),
        ("beauty", "user_item", "beauty/beauty.txt", (40_226, 54_542, 353_962)),
        ("ml-100k", "movielens_100k", "ml-100k/u.data", (943, 1682, 100_000)),
    ],
)
def test_real_data_counts(
    real_data_dir: Path,
    tmp_path: Path,
    name: str,
    fmt: str,
    path: str,
    counts: tuple[int, int, int],
) -> None:
    source = Source(name=name, format=fmt, path=path)
    p = load_prepared(source, Preparation(), real_data_dir, tmp_path / "cache")
    assert (p.n_users, p.n_items, p.n_interactions) == counts
    inter = p.interactions
    assert inter["user_idx"].is_sorted()
    assert (inter["user_idx"].min(), inter["user_idx"].max()) == (1, counts[0])
    assert (inter["item_idx"].min(), inter["item_idx"].max()) == (1, counts[1])


def test_real_ml1m_keeps_file_order_and_ids(real_data_dir: Path, tmp_path: Path) -> None:
    # ml-1m.txt ids are already 1..n and each user's lines are in time order: nothing moves
    source = Source(name="ml-1m", format="user_item", path="ml-1m/ml-1m.txt")
    p = load_prepared(source, Preparation(), real_data_dir, tmp_path / "cache")
    raw = pl.read_csv(
        real_data_dir / "ml-1m" / "ml-1m.txt",
        separator=" ",
        has_header=False,
        schema={"user_idx": pl.Int64, "item_idx": pl.Int64},
    ).sort("user_idx", maintain_order=True)
    assert p.interactions.select("user_idx", "item_idx").equals(raw)
    assert (p.users["user_id"] == p.users["user_idx"]).all()


def test_real_ml100k_sorted_by_time_within_user(real_data_dir: Path, tmp_path: Path) -> None:
    source = Source(name="ml-100k", format="movielens_100k", path="ml-100k/u.data")
    p = load_prepared(source, Preparation(rating_threshold=4), real_data_dir, tmp_path / "c")
    inter = p.interactions
    ordered = inter.select((pl.col("timestamp").diff().over("user_idx").fill_null(0) >= 0).all()).item()
    assert ordered
    assert p.n_interactions == 55_375  # ratings 4 and 5 in ML-100K
