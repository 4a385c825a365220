"""Item features from files: the config, each format and kind, the errors that name the line, the cache."""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_attn.data.cache import load_prepared
from recsys_attn.data.errors import DataError
from recsys_attn.data.feature_config import feature_set
from recsys_attn.data.features import load_item_features
from recsys_attn.data.item_features import MISSING, NO_ITEM, ItemFeatures
from recsys_attn.data.preprocess import Preparation
from recsys_attn.data.sources import Source
from recsys_attn.errors import ConfigError

LOG = ["1 10", "1 20", "1 30", "2 20", "2 30", "2 40", "3 10", "3 40", "3 20"]
"""A ``user item`` log of items 10, 20, 30, 40 (item_idx 1..4 in that order)."""


def features_of(tmp_path: Path, config: dict[str, object], log: list[str] = LOG) -> ItemFeatures:
    if not (tmp_path / "log.txt").is_file():  # written once: a rewritten log would be prepared again
        (tmp_path / "log.txt").write_text("\n".join(log) + "\n")
    source = Source("toy", "user_item", str(tmp_path / "log.txt"))
    prepared = load_prepared(source, Preparation(), tmp_path, tmp_path / "cache")
    found = load_item_features(feature_set(config), source, prepared, tmp_path, tmp_path / "cache")
    assert found is not None
    return found


def column(features: ItemFeatures, name: str):  # type: ignore[no-untyped-def]
    return next(c for c in features.columns if c.name == name)


# -- the config ---------------------------------------------------------------------------------


def test_none_and_empty_configs_mean_no_features() -> None:
    assert not feature_set(None) and not feature_set({}) and not feature_set({"files": []})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"path": "a.csv", "colums": {"x": "multi"}}, "features.colums: unknown key"),
        ({"path": "a.csv", "columns": {"x": "multy"}}, "features.columns.x.kind: expected one of"),
        ({"path": "a.csv", "columns": {"x": {"kind": "numeric", "scale": "zscore"}}}, "features.columns.x.scale"),
        ({"path": "a.csv", "columns": {"x": {"knd": "multi"}}}, "features.columns.x.knd: unknown key"),
        ({"path": "a.txt"}, "features.format: 'auto' cannot tell"),
        ({"path": "???"}, "features.path: set the features file"),
        ({"files": [{"path": "a.csv"}, {"path": "b.csv", "unknown_items": "drop"}]}, "features.files[1].unknown_items"),
        (
            {"files": [{"path": "a.csv", "columns": {"g": "multi"}}, {"path": "b.csv", "columns": {"g": "multi"}}]},
            "feature 'g' is named by two files",
        ),
        ({"path": "a.csv", "encoding": "klingon"}, "features.encoding='klingon'"),
    ],
)
def test_a_wrong_key_or_value_fails_naming_it(config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        feature_set(config)


# -- csv: kinds, vocabularies, missing values -------------------------------------------------------


def test_csv_columns_become_features_by_their_values(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(
        "item_id,brand,price,genres\n10,acme,2.0,a|b\n20,acme,4.0,b\n30,zeta,,\n40,,6.0,c|a|a\n"
    )
    found = features_of(
        tmp_path, {"path": "items.csv", "columns": {"brand": "auto", "price": "auto", "genres": "multi"}}
    )
    brand, price, genres = column(found, "brand"), column(found, "price"), column(found, "genres")
    assert (brand.kind, price.kind, genres.kind) == ("categorical", "numeric", "multi")
    assert brand.vocab == ("acme", "zeta")  # the most frequent first
    assert brand.values.tolist() == [NO_ITEM, 2, 2, 3, MISSING]
    assert brand.missing.tolist() == [False, False, False, False, True]
    # standard scaling over the items with a value (2, 4, 6: mean 4, std 2); missing: 0 and flagged
    assert price.values[:, 0].tolist() == [0.0, -1.0, 0.0, 0.0, 1.0]
    assert price.missing.tolist() == [False, False, False, True, False]
    assert genres.vocab == ("a", "b", "c")  # a: 2 items, b: 2, c: 1; ties by value
    assert genres.values.tolist() == [[0, 0], [2, 3], [3, 0], [MISSING, 0], [4, 2]]  # a repeated value counts once


def test_every_column_is_read_when_none_are_named(tmp_path: Path) -> None:
    (tmp_path / "items.tsv").write_text("item_id\tcolour\tyear\n10\tred\t1990\n20\tblue\t2000\n")
    found = features_of(tmp_path, {"path": "items.tsv", "columns": None})
    assert [(c.name, c.kind) for c in found.columns] == [("colour", "categorical"), ("year", "numeric")]
    assert column(found, "colour").missing.tolist() == [False, False, False, True, True]


@pytest.mark.parametrize(
    ("body", "config", "message"),
    [
        (
            "item_id,x\n10,a\n20,b\n010,c\n",  # 010 is item 10
            {},
            r"items.csv:4: item 10 of column 'item_id' appears again \(first on line 2\), got '010,c'",
        ),
        (
            "sku,x\n20,b\n10,a\n30,c\n10,c\n",
            {"item_column": "sku"},
            r"items.csv:5: item 10 of column 'sku' appears again \(first on line 3\), got '10,c'",
        ),
        ("item_id,x\n10,1\n20,abc\n", {"columns": {"x": "numeric"}}, r"items.csv:3: column 'x' .*not a number"),
        ("item_id,x\n10,1\n20,nan\n", {"columns": {"x": "numeric"}}, r"items.csv:3: column 'x' .*NaN or infinite"),
        (
            "item_id,x\n10,1\n20,-1\n",
            {"columns": {"x": {"kind": "numeric", "scale": "log"}}},
            r"items.csv:3: .*negative",
        ),
        ("item_id,x\n10,1\n99,2\n", {"unknown_items": "error"}, r"items.csv:3: item 99 is not in the catalogue"),
        ("item,x\n10,1\n", {}, r"items.csv: no item column 'item_id' \(features.item_column\)"),
        ("item_id,x\n10,1\n", {"columns": {"y": "numeric"}}, r"items.csv: no column 'y' \(features.columns.y\)"),
        ("item_id,x\n10,1\n", {"columns": {"x": "vector"}}, r"vector features come from a Parquet"),
        ("item_id,x\n,1\n", {}, r"items.csv:2: missing item id"),
    ],
)
def test_a_bad_file_fails_naming_its_line_and_column(tmp_path: Path, body: str, config: dict, message: str) -> None:
    (tmp_path / "items.csv").write_text(body)
    with pytest.raises(DataError, match=message):
        features_of(tmp_path, {"path": "items.csv", **config})


def numeric(scale: str) -> dict[str, str]:
    return {"kind": "numeric", "scale": scale}


LOGGED = (0.5, 3.0, 10.0)
"""The values of items 10, 20 and 40 in ``SCALED`` (30 has none; 99, not in the catalogue, does not count)."""
SCALED = "item_id,x\n10,0.5\n20,3\n30,\n40,10\n99,1000\n"
LOG1P = [math.log1p(v) for v in LOGGED]


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        ("none", list(LOGGED)),
        ("minmax", [(v - 0.5) / (10.0 - 0.5) for v in LOGGED]),
        ("standard", [(v - statistics.mean(LOGGED)) / statistics.stdev(LOGGED) for v in LOGGED]),
        ("log", [(v - statistics.mean(LOG1P)) / statistics.stdev(LOG1P) for v in LOG1P]),
    ],
)
def test_numbers_are_scaled_over_the_catalogues_items(tmp_path: Path, scale: str, expected: list[float]) -> None:
    (tmp_path / "items.csv").write_text(SCALED)
    found = column(features_of(tmp_path, {"path": "items.csv", "columns": {"x": numeric(scale)}}), "x")
    want = torch.tensor([0.0, expected[0], expected[1], 0.0, expected[2]])  # [PAD, 10, 20, 30, 40]
    torch.testing.assert_close(found.values[:, 0], want)
    assert found.missing.tolist() == [False, False, False, True, False]


@pytest.mark.parametrize(("scale", "expected"), [("none", 5.0), ("minmax", 0.0), ("standard", 0.0), ("log", 0.0)])
def test_a_constant_number_is_only_shifted(tmp_path: Path, scale: str, expected: float) -> None:
    (tmp_path / "items.csv").write_text("item_id,x\n10,5\n20,5\n")
    found = column(features_of(tmp_path, {"path": "items.csv", "columns": {"x": numeric(scale)}}), "x")
    assert found.values[:, 0].tolist() == [0.0, expected, expected, 0.0, 0.0]  # no division by a zero spread


def test_rows_of_items_outside_the_catalogue_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "items.csv").write_text("item_id,x\n10,a\n99,b\n98,b\n")
    with caplog.at_level("INFO"):
        found = features_of(tmp_path, {"path": "items.csv"})
    assert "2 of 3 rows name items the prepared log does not have" in caplog.text
    assert "3 of 4 items have no row" in caplog.text
    assert column(found, "x").vocab == ("a",)  # the vocabulary holds the catalogue's values only


# -- parquet and json ---------------------------------------------------------------------------------


def test_parquet_lists_and_vectors(tmp_path: Path) -> None:
    pl.DataFrame(
        {
            "item_id": [10, 20, 40],
            "tags": [["x", "y"], [], None],
            "codes": [[7], [7, 8], [9]],
            "emb": [[1.0, 2.0], [3.0, 4.0], None],
        }
    ).write_parquet(tmp_path / "items.parquet")
    found = features_of(tmp_path, {"path": "items.parquet"})
    kinds = {c.name: c.kind for c in found.columns}
    assert kinds == {"tags": "multi", "codes": "multi", "emb": "vector"}
    assert column(found, "tags").missing.tolist() == [False, False, True, True, True]  # [] and null: no value
    emb = column(found, "emb")
    assert emb.values.tolist() == [[0, 0], [1, 2], [3, 4], [0, 0], [0, 0]]
    assert emb.missing.tolist() == [False, False, False, True, True]


@pytest.mark.parametrize(
    ("emb", "message"),
    [
        ([[1.0, 2.0], [3.0]], r"items.parquet: row 2: .*another length than 2"),
        ([[1.0, float("nan")], [3.0, 4.0]], "NaN"),
    ],
)
def test_bad_vectors_fail_naming_the_row(tmp_path: Path, emb: list, message: str) -> None:
    pl.DataFrame({"item_id": [10, 20], "emb": emb}).write_parquet(tmp_path / "items.parquet")
    with pytest.raises(DataError, match=message):
        features_of(tmp_path, {"path": "items.parquet"})


@pytest.mark.parametrize(
    ("columns", "kind", "message"),
    [
        (
            {"item_id": [10, 20, 30], "x": [None, "a", "b"]},
            "numeric",
            r"items.parquet: row 2: column 'x' of type String cannot be a numeric feature "
            r"\(features.columns.x.kind\), got 'a'",
        ),
        ({"item_id": [10, 20], "x": [1.5, None]}, "categorical", r"items.parquet: row 1: column 'x' of type Float64"),
        ({"item_id": [10, 20], "x": [None, None]}, "vector", r"items.parquet: column 'x' of type Null cannot be"),
    ],
)
def test_a_parquet_column_of_the_wrong_type_fails_naming_its_first_row(
    tmp_path: Path, columns: dict, kind: str, message: str
) -> None:
    pl.DataFrame(columns).write_parquet(tmp_path / "items.parquet")
    with pytest.raises(DataError, match=message):
        features_of(tmp_path, {"path": "items.parquet", "columns": {"x": kind}})


def test_a_repeated_parquet_row_fails_naming_both_rows_and_the_column(tmp_path: Path) -> None:
    pl.DataFrame({"item_id": [10, 20, 10], "x": ["a", "b", "c"]}).write_parquet(tmp_path / "items.parquet")
    message = r"items.parquet: row 3: item 10 of column 'item_id' appears again \(first on row 1\)"
    with pytest.raises(DataError, match=message):
        features_of(tmp_path, {"path": "items.parquet"})


def test_json_attributes_as_s3rec_ships_them(tmp_path: Path) -> None:
    (tmp_path / "attrs.json").write_text('{"20": [5, 6], "10": [6], "30": []}')
    found = features_of(tmp_path, {"path": "attrs.json"})
    attrs = column(found, "attributes")
    assert attrs.kind == "multi" and attrs.vocab == ("6", "5")
    assert attrs.values.tolist() == [[0, 0], [2, 0], [3, 2], [MISSING, 0], [MISSING, 0]]


def test_json_naming_an_item_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "attrs.json").write_text('{"10": [1], "20": [2], "10": [3]}')  # json.loads would keep [3] silently
    with pytest.raises(DataError, match=r"attrs.json: entry 3: item 10 appears again \(first as entry 1\)"):
        features_of(tmp_path, {"path": "attrs.json"})
    (tmp_path / "attrs.json").write_text('{"10": [1], "010": [3]}')  # the same item once ids are read as numbers
    with pytest.raises(DataError, match=r"attrs.json.*item 10 .*appears again"):
        features_of(tmp_path, {"path": "attrs.json"})


def test_json_of_other_shapes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "attrs.json").write_text('{"10": [{"a": 1}]}')
    with pytest.raises(DataError, match=r"attrs.json: entry 1 \(item 10\): values must be text or integers"):
        features_of(tmp_path, {"path": "attrs.json"})


# -- the cache ---------------------------------------------------------------------------------------


def test_a_changed_features_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,x\n10,a\n20,b\n")
    assert column(features_of(tmp_path, {"path": "items.csv"}), "x").vocab == ("a", "b")
    assert column(features_of(tmp_path, {"path": "items.csv"}), "x").vocab == ("a", "b")  # from the cache
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 1
    path.write_text("item_id,x\n10,c\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert column(features_of(tmp_path, {"path": "items.csv"}), "x").vocab == ("c",)


# -- the built-in features on the real files ---------------------------------------------------------


def builtin(real_data_dir: Path, tmp_path: Path, data: str, features: str) -> ItemFeatures:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.conftest import REPO_ROOT

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [f"data={data}", f"features={features}", f"paths.data_dir={real_data_dir}"])
    source = instantiate(cfg.data.source)
    prepared = load_prepared(source, Preparation(), real_data_dir, tmp_path)
    spec = feature_set(OmegaConf.to_container(cfg.data.features, resolve=True))
    found = load_item_features(spec, source, prepared, real_data_dir, tmp_path)
    assert found is not None and found.n_items == prepared.n_items
    return found


def test_ml1m_genres_and_years_through_the_sasrec_id_map(real_data_dir: Path, tmp_path: Path) -> None:
    found = builtin(real_data_dir, tmp_path, "ml-1m", "ml-1m")
    genres, year = column(found, "genres"), column(found, "year")
    assert len(genres.vocab) == 18 and int(genres.missing.sum()) == 0 and int(year.missing.sum()) == 0
    # ml-1m.txt's item 1 is MovieLens 1198, "Raiders of the Lost Ark (1981)", Action|Adventure
    assert {genres.vocab[c - 2] for c in genres.values[1].tolist() if c >= 2} == {"Action", "Adventure"}


def test_ml100k_genres_from_the_flags(real_data_dir: Path, tmp_path: Path) -> None:
    found = builtin(real_data_dir, tmp_path, "ml-100k", "ml-100k")
    genres = column(found, "genres")
    # u.item's item 1: Toy Story (1995), Animation|Children's|Comedy
    assert {genres.vocab[c - 2] for c in genres.values[1].tolist() if c >= 2} == {"Animation", "Children's", "Comedy"}
    assert int(column(found, "year").missing.sum()) == 1  # one u.item line has no release date


def test_beauty_s3rec_attributes(real_data_dir: Path, tmp_path: Path) -> None:
    found = builtin(real_data_dir, tmp_path, "beauty-s3rec", "beauty-s3rec")
    attrs = column(found, "attributes")
    assert found.n_items == 12101 and len(attrs.vocab) == 637 and int(attrs.missing.sum()) == 0
    per_item = (attrs.values[1:] >= 2).sum(1).double().mean()  # [n_items] attributes per item
    assert torch.isclose(per_item, torch.tensor(3.7, dtype=torch.float64), atol=0.05)


# -- items only the features file names (unknown_items=add) -------------------------------------------


def test_items_only_a_features_file_names_join_the_catalogue_as_cold_items(tmp_path: Path) -> None:
    from recsys_attn.evaluation.cold import cold_items_of
    from tests.conftest import toy_datamodule

    (tmp_path / "items.csv").write_text("item_id,x\n10,a\n99,b\n40,b\n98,a\n")
    features = {"path": str(tmp_path / "items.csv"), "unknown_items": "add"}
    dm = toy_datamodule(tmp_path, LOG, features=features)
    assert dm.prepared is not None and dm.item_features is not None
    assert dm.n_items == 6 and dm.prepared.items["item_id"].to_list() == [10, 20, 30, 40, 99, 98]  # file order
    assert dm.prepared.items["item_idx"].to_list() == [1, 2, 3, 4, 5, 6]
    x = column(dm.item_features, "x")
    assert x.values.shape[0] == 7 and x.vocab == ("a", "b")  # rows for PAD and the six items
    codes = x.values.squeeze(-1).tolist()  # [7] PAD, 10, 20, 30, 40, 99, 98
    assert codes[5] == codes[4] != codes[1] == codes[6]  # 99 as 40 ('b'), 98 as 10 ('a'): read through the file
    assert codes[2] == codes[3] == MISSING  # 20 and 30 have no row
    assert cold_items_of(dm.item_popularity).nonzero().squeeze(1).tolist()[-2:] == [5, 6]  # never trained on
    plain = toy_datamodule(tmp_path / "plain", LOG, features={**features, "unknown_items": "report"})
    assert plain.n_items == 4  # by default the log's items are the catalogue


def test_added_items_need_the_logs_ids(tmp_path: Path) -> None:
    from tests.conftest import toy_datamodule

    (tmp_path / "items.csv").write_text("item_id,x\n10,a\nnew-7,b\n")
    with pytest.raises(DataError, match=r"items\.csv:3: .*not of the log's type"):
        toy_datamodule(tmp_path, LOG, features={"path": str(tmp_path / "items.csv"), "unknown_items": "add"})
    keyed = {"path": str(tmp_path / "items.csv"), "unknown_items": "add", "key_map": "map.txt"}
    with pytest.raises(ConfigError, match=r"features.unknown_items=add: this file is keyed through key_map"):
        toy_datamodule(tmp_path / "k", LOG, features=keyed)
