"""Item side information as tensors indexed by ``item_idx``: what the data side hands to the models.

The data side (``data.features``) reads feature files and encodes each feature for every item of the prepared
catalogue; the models (``models.item_embedding``) embed the encoded values and fuse them with the item-id
embedding. Row ``i`` of every tensor describes ``item_idx == i``; row 0 is padding (``constants.PAD``), and a
model with extra tokens (BERT4Rec's MASK) gives them rows like row 0.

Codes of the categorical kinds: 0 = no item (padding, MASK), 1 = the item has no value (its own learned
"missing" embedding), ``2 + j`` = ``vocab[j]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

FEATURE_KINDS = ("categorical", "multi", "numeric", "vector")
"""``categorical``: one value an item; ``multi``: a set of values (genres, categories); ``numeric``: one number,
scaled; ``vector``: a fixed-size float vector (a precomputed text or image embedding)."""

NO_ITEM, MISSING, FIRST_VALUE = 0, 1, 2
"""Codes of the categorical kinds: padding and MASK rows, an item without a value, the first vocabulary value."""


@dataclass(frozen=True)
class FeatureColumn:
    """One feature encoded for every ``item_idx`` 0..n_items.

    Attributes:
        name: The feature's name (unique among the features of a run), e.g. ``genres``.
        kind: One of ``FEATURE_KINDS``.
        values: ``categorical``: ``[n_items + 1]`` int64 codes; ``multi``: ``[n_items + 1, W]`` int64 codes, each
            row its item's codes first and ``NO_ITEM`` after (an item without values: ``[MISSING, 0, ...]``);
            ``numeric``: ``[n_items + 1, 1]`` float32, scaled (0 where missing); ``vector``: ``[n_items + 1, d]``
            float32 (0 where missing).
        missing: ``[n_items + 1]`` bool, True for an item that has no value (never for row 0).
        vocab: The categorical values as text, code ``FIRST_VALUE + j`` = ``vocab[j]``; empty for numeric and vector.
    """

    name: str
    kind: str
    values: Tensor
    missing: Tensor
    vocab: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"feature {self.name!r}: kind {self.kind!r} is not one of {', '.join(FEATURE_KINDS)}")
        rows = self.missing.shape[0]
        want_2d = self.kind != "categorical"
        if self.values.shape[0] != rows or (self.values.dim() == 2) != want_2d:
            raise ValueError(
                f"feature {self.name!r} ({self.kind}): values {tuple(self.values.shape)} do not fit {rows} items"
            )
        categorical = self.kind in ("categorical", "multi")
        if categorical != (self.values.dtype == torch.int64):
            raise ValueError(f"feature {self.name!r} ({self.kind}): values of dtype {self.values.dtype}")

    @property
    def size(self) -> int:
        """Embedding rows of a categorical kind (values + the two special codes); input width otherwise."""
        if self.kind in ("categorical", "multi"):
            return len(self.vocab) + FIRST_VALUE
        return int(self.values.shape[1])

    @property
    def width(self) -> int:
        """Values per item: codes per row of ``multi``, 1 for ``categorical``, the input width otherwise."""
        return 1 if self.kind == "categorical" else int(self.values.shape[1])

    def spec(self) -> dict[str, Any]:
        """What a model needs to build this feature's layers (JSON-able; saved in the checkpoint's hparams)."""
        return {"kind": self.kind, "size": self.size, "width": self.width}


@dataclass(frozen=True)
class ItemFeatures:
    """Every feature of a run, for ``item_idx`` 0..n_items; its ``spec`` is what the model is built from."""

    columns: tuple[FeatureColumn, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique: {names}")
        if len({c.missing.shape[0] for c in self.columns}) > 1:
            raise ValueError("features describe different numbers of items")

    @property
    def n_items(self) -> int:
        """Items described (rows less the padding row)."""
        return int(self.columns[0].missing.shape[0]) - 1 if self.columns else 0

    def spec(self) -> dict[str, dict[str, Any]]:
        """``{name: {kind, size, width}}`` of every feature, in order."""
        return {c.name: c.spec() for c in self.columns}

    def vocab(self) -> dict[str, list[str]]:
        """The categorical values of each feature (what a code means), saved beside the weights."""
        return {c.name: list(c.vocab) for c in self.columns if c.vocab}
