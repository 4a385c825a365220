"""A data set's identity as checkpoints record it: stable hashes of the item id map and of the prepared log."""

import hashlib
from pathlib import Path

import polars as pl

from recsys_attn.data.identity import DataIdentity, item_map_hash, item_sequence_hash
from tests.conftest import toy_datamodule

LINES = ["1 10", "1 11", "1 12", "2 11", "2 12", "2 13", "3 10", "3 13"]
PERMUTED = ["1 12", "1 13", "1 10", "2 13", "2 10", "2 11", "3 12", "3 11"]  # ids 10 11 12 13 -> 12 13 10 11


def test_the_item_map_hash_is_pinned_and_reads_ids_as_text() -> None:
    """Pinned: a change of the hashed text would make every saved checkpoint look like other data."""
    expected = hashlib.sha256(b"1:11:21:3").hexdigest()
    assert item_map_hash(pl.Series([1, 2, 3])) == expected
    assert item_map_hash(pl.Series(["1", "2", "3"])) == expected  # int or text ids: the same ids
    assert item_map_hash(pl.Series([2, 1, 3])) != expected  # the order is the map
    # Framed by length: ids holding the separator do not collide with other splits of the same text.
    assert item_map_hash(pl.Series(["a:1", "b"])) != item_map_hash(pl.Series(["a", "1b"]))
    assert item_map_hash(pl.Series(["é"])) == hashlib.sha256("2:é".encode()).hexdigest()


def test_the_item_sequence_hash_is_pinned() -> None:
    expected = hashlib.sha256(b"".join(i.to_bytes(8, "little") for i in (3, 1, 2))).hexdigest()
    assert item_sequence_hash(pl.Series([3, 1, 2])) == expected
    assert item_sequence_hash(pl.Series([3, 1, 2], dtype=pl.Int32)) == expected


def test_the_same_log_elsewhere_is_the_same_data(tmp_path: Path) -> None:
    one = toy_datamodule(tmp_path / "a", LINES).data_identity
    two = toy_datamodule(tmp_path / "b", LINES).data_identity
    assert one == two
    assert (one.source, one.file, one.n_items) == ("toy", "toy/log.txt", 4)
    assert one.preparation["dedup"] is True


def test_a_log_with_permuted_ids_keeps_the_sorted_map_but_not_the_log(tmp_path: Path) -> None:
    """The map holds the sorted ids, so only the prepared log tells a permuted copy from the original."""
    one = toy_datamodule(tmp_path / "a", LINES).data_identity
    permuted = toy_datamodule(tmp_path / "b", PERMUTED).data_identity
    assert permuted.item_map == one.item_map and permuted.same_source(one)
    assert permuted.interactions != one.interactions


def test_other_ids_are_another_map(tmp_path: Path) -> None:
    one = toy_datamodule(tmp_path / "a", LINES).data_identity
    shifted = toy_datamodule(tmp_path / "b", [line.replace(" 1", " 2") for line in LINES]).data_identity
    assert shifted.n_items == one.n_items and shifted.item_map != one.item_map


def test_the_identity_round_trips_and_old_checkpoints_have_none(tmp_path: Path) -> None:
    identity = toy_datamodule(tmp_path, LINES).data_identity
    assert DataIdentity.from_dict(identity.to_dict()) == identity
    assert DataIdentity.from_dict(None) is None
    assert DataIdentity.from_dict({"source": "x"}) is None
    legacy = {k: v for k, v in identity.to_dict().items() if k != "interactions"}
    assert DataIdentity.from_dict(legacy) == DataIdentity(**{**legacy, "interactions": ""})
