"""Id maps: a log's numbering replaced by the original ids, with file:line errors and cache invalidation."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from recsys_attn.data.cache import load_prepared
from recsys_attn.data.errors import DataError
from recsys_attn.data.preprocess import Preparation
from recsys_attn.data.sources import Source

ITEM_MAP = "1 1198\n2 3552\n3 356\n"
USER_MAP = "1 10\n2 20\n3 30\n"


@pytest.fixture()
def data_dir(data_dir: Path) -> Path:
    """The toy log of conftest, with map files for its items and users."""
    (data_dir / "items.txt").write_text(ITEM_MAP)
    (data_dir / "users.txt").write_text(USER_MAP)
    return data_dir


def source(**maps: str) -> Source:
    return Source(name="toy", format="user_item", path="log.txt", **maps)


def test_maps_change_only_the_id_tables(data_dir: Path, tmp_path: Path) -> None:
    plain = load_prepared(source(), Preparation(), data_dir, tmp_path / "c1")
    mapped = load_prepared(
        source(user_id_map="users.txt", item_id_map="items.txt"), Preparation(), data_dir, tmp_path / "c2"
    )
    # internal indices are untouched, so a checkpoint trained without maps serves with them
    assert mapped.interactions.equals(plain.interactions)
    assert mapped.items["item_idx"].equals(plain.items["item_idx"]) and mapped.items.columns == plain.items.columns
    to_item = {1: 1198, 2: 3552, 3: 356}
    assert mapped.items["item_id"].to_list() == [to_item[i] for i in plain.items["item_id"].to_list()]
    assert mapped.users["user_id"].to_list() == [10 * u for u in plain.users["user_id"].to_list()]


def test_unmapped_id_names_the_log_line_and_the_key(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "items.txt").write_text("1 1198\n2 3552\n")
    with pytest.raises(DataError, match=r"log\.txt:3: item id 3 is not in data\.source\.item_id_map"):
        load_prepared(source(item_id_map="items.txt"), Preparation(), data_dir, tmp_path / "cache")
    assert not (tmp_path / "cache" / "prepared").exists() or not any((tmp_path / "cache" / "prepared").iterdir())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 1198\n2 x\n", r"items\.txt:2: expected 2 space-separated integer fields"),
        ("1 1198\n2 3552\n1 356\n", r"items\.txt:3: id 1 is mapped again \(first on line 1\)"),
    ],
)
def test_bad_map_file_is_named_with_its_line(data_dir: Path, tmp_path: Path, text: str, message: str) -> None:
    (data_dir / "items.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        load_prepared(source(item_id_map="items.txt"), Preparation(), data_dir, tmp_path / "cache")


def test_missing_map_file_names_the_key(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.source\.user_id_map: no file at .*nope\.txt"):
        load_prepared(source(user_id_map="nope.txt"), Preparation(), data_dir, tmp_path / "cache")


def test_editing_a_map_rebuilds_the_cache(data_dir: Path, tmp_path: Path) -> None:
    src = source(item_id_map="items.txt")
    first = load_prepared(src, Preparation(), data_dir, tmp_path / "cache")
    path = data_dir / "items.txt"
    path.write_text("1 5\n2 6\n3 7\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = load_prepared(src, Preparation(), data_dir, tmp_path / "cache")
    assert first.meta["cache_path"] != second.meta["cache_path"]
    assert sorted(second.items["item_id"].to_list()) == [5, 6, 7]


def test_real_ml1m_with_movielens_ids(real_data_dir: Path, tmp_path: Path) -> None:
    src = Source(
        name="ml-1m", format="user_item", path="ml-1m/ml-1m.txt", item_id_map="ml-1m/sas_to_original_items.txt"
    )
    prepared = load_prepared(src, Preparation(), real_data_dir, tmp_path / "cache")
    assert (prepared.n_users, prepared.n_items, prepared.n_interactions) == (6040, 3416, 999_611)
    first = prepared.interactions.head(1).join(prepared.items, on="item_idx")["item_id"].item()  # user 1's first
    assert first == 1198  # ml-1m.txt's item 1 (line 1) is MovieLens movie 1198
    titles = pl.read_csv(
        real_data_dir / "ml-1m" / "movies.dat", separator="\x1f", has_header=False, quote_char=None, encoding="latin1"
    )
    movie_ids = {int(line.split("::")[0]) for line in titles.to_series().to_list()}
    assert set(prepared.items["item_id"].to_list()) <= movie_ids  # every item is a MovieLens movie
