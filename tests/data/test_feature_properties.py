"""Properties of item features read from files, checked on tiny catalogues and feature files hypothesis draws.

Every catalogue item gets exactly the values of its row (joined by item id, through a key map or not), an item
without a row or a value gets ``MISSING``, vocabularies are the values the catalogue's items have, and the order
of the file's rows changes nothing.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_attn.data.feature_config import feature_set
from recsys_attn.data.features import load_item_features
from recsys_attn.data.item_features import FIRST_VALUE, MISSING, NO_ITEM, FeatureColumn, ItemFeatures
from recsys_attn.data.preprocess import Preparation, preprocess
from recsys_attn.data.sources import Source

SETTINGS = settings(max_examples=30, deadline=None)

VALUES = ("a", "b", "B", "7", "x y")
"""Few values, so that ties and repeats occur; ``7`` is a category, not a number; ``x y`` holds a space."""

FORMATS = ("csv", "tsv", "parquet", "json")

MAPPED_OFFSET = 1000
"""With a key map, the file names item ``i`` of the log as ``i + MAPPED_OFFSET``."""


@dataclass(frozen=True)
class Row:
    """One row of a features file: the log's item id and its values (``tags`` empty: no value)."""

    item: int
    cat: str | None
    tags: tuple[str, ...]
    num: float | None


@dataclass(frozen=True)
class Case:
    """A catalogue, the rows of a features file (in file order, and shuffled), and how the file is written."""

    catalogue: tuple[int, ...]  # the log's item ids, sorted: item_idx 1..n
    rows: tuple[Row, ...]
    shuffled: tuple[Row, ...]
    fmt: str
    mapped: bool  # keyed by other ids, through a key map
    padded: bool  # ids written with leading zeros (007 is item 7)

    def row_of(self, item: int) -> Row | None:
        return next((r for r in self.rows if r.item == item), None)


ROW_VALUES = st.tuples(
    st.none() | st.sampled_from(VALUES),
    st.lists(st.sampled_from(VALUES), max_size=4).map(tuple),  # repeats included: a value counts once
    st.none() | st.integers(-40, 40).map(lambda x: x / 4),  # exact in float32
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    catalogue = tuple(sorted(draw(st.sets(st.integers(1, 12), min_size=1, max_size=8))))
    described = sorted(draw(st.sets(st.integers(1, 15), min_size=1, max_size=10)))  # 13..15 never in the log
    rows = tuple(Row(item, *draw(ROW_VALUES)) for item in described)
    return Case(
        catalogue,
        tuple(draw(st.permutations(rows))),
        tuple(draw(st.permutations(rows))),
        draw(st.sampled_from(FORMATS)),
        draw(st.booleans()),
        draw(st.booleans()),
    )


def file_key(case: Case, item: int) -> str:
    key = item + MAPPED_OFFSET if case.mapped else item
    return f"{key:05d}" if case.padded else str(key)


def write_file(case: Case, rows: tuple[Row, ...], folder: Path) -> Path:
    """``rows`` as a features file of ``case.fmt`` (JSON: the tags alone) in ``folder``."""
    keys = [file_key(case, r.item) for r in rows]
    path = folder / f"items.{case.fmt}"
    if case.fmt == "json":
        path.write_text(json.dumps({k: list(r.tags) for k, r in zip(keys, rows, strict=True)}))
    elif case.fmt == "parquet":
        pl.DataFrame(
            {
                "item_id": keys if case.padded else [int(k) for k in keys],
                "cat": [r.cat for r in rows],
                "tags": [list(r.tags) for r in rows],
                "num": [r.num for r in rows],
            },
            schema_overrides={"cat": pl.String, "tags": pl.List(pl.String), "num": pl.Float64},
        ).write_parquet(path)
    else:
        with path.open("w", newline="") as f:
            writer = csv.writer(f, delimiter="," if case.fmt == "csv" else "\t", lineterminator="\n")
            writer.writerow(["item_id", "cat", "tags", "num"])
            for key, r in zip(keys, rows, strict=True):
                writer.writerow([key, r.cat or "", "|".join(r.tags), "" if r.num is None else repr(r.num)])
    return path


def encoded(case: Case, rows: tuple[Row, ...]) -> dict[str, FeatureColumn]:
    """The features of ``rows`` written as ``case`` says, for a log of ``case.catalogue``'s items."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config: dict[str, object] = {"path": str(write_file(case, rows, folder))}
        if case.fmt == "json":
            config["columns"] = {"tags": "multi"}
        else:
            config["columns"] = {"cat": "categorical", "tags": "multi", "num": {"kind": "numeric", "scale": "none"}}
        if case.mapped:
            lines = "".join(f"{i} {i + MAPPED_OFFSET}\n" for i in case.catalogue)
            (folder / "map.txt").write_text(lines)
            config["key_map"] = str(folder / "map.txt")
        n = len(case.catalogue)
        raw = pl.DataFrame(
            {"user": [1] * n, "item": list(case.catalogue), "timestamp": list(range(n)), "rating": [None] * n},
            schema_overrides={"rating": pl.Float64},
        ).with_columns(pl.int_range(1, n + 1, dtype=pl.Int64).alias("line"))
        prepared = preprocess(raw, Preparation(), "toy")
        assert prepared.items["item_id"].to_list() == list(case.catalogue)  # item_idx 1..n in id order
        source = Source("toy", "user_item", "unused.txt")
        found = load_item_features(feature_set(config), source, prepared, folder, folder / "cache")
    assert isinstance(found, ItemFeatures)
    return {c.name: c for c in found.columns}


def expected_vocab(values: list[str]) -> tuple[str, ...]:
    """The vocabulary of ``values`` (one per item that has it): the most frequent first, ties by value."""
    counts = Counter(values)
    return tuple(sorted(counts, key=lambda v: (-counts[v], v)))


@SETTINGS
@given(case=cases())
def test_every_catalogue_item_gets_its_rows_values_and_the_others_missing(case: Case) -> None:
    found = encoded(case, case.rows)
    rows = [case.row_of(i) for i in case.catalogue]  # [n] each catalogue item's row, or None
    tags = [() if r is None else tuple(dict.fromkeys(r.tags)) for r in rows]  # distinct, in the row's order
    vocab = expected_vocab([t for ts in tags for t in ts])
    assert found["tags"].vocab == vocab
    width = max(1, *(len(t) for t in tags))
    codes = [[FIRST_VALUE + vocab.index(t) for t in ts] or [MISSING] for ts in tags]  # [n] each item's codes
    padded = [[NO_ITEM] * width] + [c + [NO_ITEM] * (width - len(c)) for c in codes]  # row 0: padding
    assert found["tags"].values.tolist() == padded
    assert found["tags"].missing.tolist() == [False, *(not t for t in tags)]
    if case.fmt == "json":
        return
    cats = [None if r is None else r.cat for r in rows]
    cat_vocab = expected_vocab([c for c in cats if c is not None])
    assert found["cat"].vocab == cat_vocab
    cat_codes = [MISSING if c is None else FIRST_VALUE + cat_vocab.index(c) for c in cats]
    assert found["cat"].values.tolist() == [NO_ITEM, *cat_codes]
    assert found["cat"].missing.tolist() == [False, *(c is None for c in cats)]
    nums = [None if r is None else r.num for r in rows]
    assert found["num"].values[:, 0].tolist() == [0.0, *(0.0 if v is None else v for v in nums)]  # scale: none
    assert found["num"].missing.tolist() == [False, *(v is None for v in nums)]


@SETTINGS
@given(case=cases())
def test_the_order_of_the_files_rows_changes_nothing(case: Case) -> None:
    first, again = encoded(case, case.rows), encoded(case, case.shuffled)
    assert list(first) == list(again)
    for name, column in first.items():
        other = again[name]
        assert column.vocab == other.vocab, name
        assert torch.equal(column.values, other.values), name
        assert torch.equal(column.missing, other.missing), name
