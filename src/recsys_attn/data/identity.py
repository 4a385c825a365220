"""What a checkpoint records of its data: the source, its preparation, and hashes of the item id map and log.

A model's weights are indexed by ``item_idx``; the item id map (``Prepared.items``: the original item id
behind each ``item_idx`` 1..n_items) says what those rows mean. Two logs with the same item count but other
ids behind the indices give the same shapes and nonsense scores, so the commands that load a checkpoint
compare the map's hash with the one the checkpoint saved. The map holds the *sorted* ids, so a log whose ids
were permuted among themselves has the same map: the hash of the prepared item sequence (``interactions``)
tells it from the log the model was trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys_attn.data.prepared import Prepared
from recsys_attn.data.preprocess import Preparation
from recsys_attn.data.sources import Source

SHORT_HASH = 12
"""Hex digits of the item map hash quoted in messages."""


def item_map_hash(item_ids: pl.Series) -> str:
    """Hex sha256 of item ids in ``item_idx`` order (the ids behind item_idx 1, 2, ...).

    The hashed text is each id's decimal or string text as ``<utf-8 byte count>:<text>``, concatenated: it
    depends on the ids and their order only (not on Python's salted ``hash``, polars' hash or the ids'
    dtype), so it is the same in every process, on every machine and polars version.
    """
    text = pl.col("id").cast(pl.String).fill_null("")
    framed = pl.concat_str([text.str.len_bytes().cast(pl.String), pl.lit(":"), text])  # [n_items] "<bytes>:<id>"
    joined = pl.DataFrame({"id": item_ids}).select(framed.str.join("")).item()  # one string
    return hashlib.sha256((joined or "").encode()).hexdigest()


def item_sequence_hash(item_idx: pl.Series) -> str:
    """Hex sha256 of the prepared log's ``item_idx`` column (users in order, each in time order) as little-endian
    int64: the same for the same prepared log on every machine, another for a log whose ids were permuted."""
    values = item_idx.cast(pl.Int64).fill_null(0).to_numpy()  # [n_interactions]
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<i8").tobytes()).hexdigest()


@dataclass(frozen=True)
class DataIdentity:
    """The data a model was trained on, as a checkpoint records it.

    Attributes:
        source: ``data.source.name``.
        file: ``data.source.path``.
        preparation: ``data.preparation`` settings.
        n_items: Items in the catalogue.
        item_map: ``item_map_hash`` of the item ids behind item_idx 1..n_items.
        interactions: ``item_sequence_hash`` of the prepared log ("" when not recorded).
    """

    source: str
    file: str
    preparation: dict[str, Any]
    n_items: int
    item_map: str
    interactions: str = ""

    @property
    def short_map(self) -> str:
        """The first hex digits of ``item_map``, enough to tell two maps apart in a message."""
        return self.item_map[:SHORT_HASH]

    def same_source(self, other: DataIdentity) -> bool:
        """Whether ``other`` names the same data set: source name, file and preparation."""
        return (self.source, self.file, self.preparation) == (other.source, other.file, other.preparation)

    def describe(self) -> str:
        """``<source>, <file>, <preparation>, map <hash>`` for one-line messages."""
        prep = " ".join(f"{k}={v}" for k, v in self.preparation.items())
        return f"{self.source}, {self.file}, {prep or 'no preparation'}, map {self.short_map}"

    def to_dict(self) -> dict[str, Any]:
        """Plain values, to store in a checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: object) -> DataIdentity | None:
        """The identity a checkpoint stored, or None when it has none (written before they recorded it)."""
        if not isinstance(saved, dict) or not isinstance(saved.get("item_map"), str):
            return None
        return cls(
            source=str(saved.get("source", "?")),
            file=str(saved.get("file", "?")),
            preparation=dict(saved.get("preparation") or {}),
            n_items=int(saved.get("n_items", -1)),
            item_map=saved["item_map"],
            interactions=str(saved.get("interactions") or ""),
        )


def data_identity(source: Source, preparation: Preparation, prepared: Prepared) -> DataIdentity:
    """The identity of ``prepared``, the data ``source`` gave under ``preparation``."""
    items = prepared.items.sort("item_idx")["item_id"]  # [n_items] sorted already by contract; cheap to be sure
    log_hash = item_sequence_hash(prepared.interactions["item_idx"])
    return DataIdentity(source.name, source.path, asdict(preparation), prepared.n_items, item_map_hash(items), log_hash)
