"""Popularity of features: a content baseline that ranks every item, cold ones included, by what its features say.

An item's score is, for each of its categorical, multi-valued and numeric features (a number: its quantile bin),
the mean training count of the items that share its value (averaged over a multi-valued feature's values),
log-scaled and summed over the features; items of equal score are ordered at random (seeded).
An item no training sequence holds is ranked like the trained items that look like it: the baseline a model that
scores cold items through their features (``data.split.cold_items``, ``test_cold/*``) has to beat.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from recsys_attn.data.item_features import FIRST_VALUE, MISSING, NO_ITEM, FeatureColumn, ItemFeatures
from recsys_attn.errors import ConfigError
from recsys_attn.models.popularity import Popularity

log = logging.getLogger(__name__)


def value_popularity(column: FeatureColumn, popularity: Tensor) -> Tensor:
    """Each item's ``[n_items + 1]`` mean, over its values of ``column``, of the mean training count of the trained
    items with that value (``popularity`` ``[n_items + 1]``: training counts)."""
    codes = column.values.reshape(column.values.shape[0], -1)  # [V, W] (categorical: W = 1)
    item = torch.arange(codes.shape[0])[:, None].expand_as(codes)  # [V, W]
    real = codes != NO_ITEM  # [V, W] a value (or MISSING) of the item
    item, code = item[real], codes[real]  # [P], [P] (item, value) pairs
    trained = popularity[item] > 0  # [P]
    size = column.size
    sums = torch.zeros(size, dtype=torch.float64).index_add_(0, code[trained], popularity[item[trained]].double())
    counts = torch.bincount(code[trained], minlength=size).double()  # [size]
    per_value = sums / counts.clamp_min(1.0)  # [size] mean training count of the trained items with each value
    total = torch.zeros(codes.shape[0], dtype=torch.float64).index_add_(0, item, per_value[code])  # [V]
    n_values = torch.bincount(item, minlength=codes.shape[0]).double()  # [V]
    return total / n_values.clamp_min(1.0)  # [V]


NUMERIC_BINS = 10
"""A numeric feature counts as a categorical one of this many quantile bins (over the items that have a value)."""


def binned(column: FeatureColumn, bins: int = NUMERIC_BINS) -> FeatureColumn:
    """A numeric ``column`` as a categorical one: the quantile bin of each item's value (``MISSING`` without one)."""
    values = column.values[:, 0]  # [V]
    present = ~column.missing  # [V]
    present[0] = False
    if not bool(present.any()):
        codes = torch.where(column.missing, MISSING, NO_ITEM)  # [V]
        return FeatureColumn(column.name, "categorical", codes, column.missing)
    edges = torch.quantile(values[present].double(), torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1])
    codes = torch.bucketize(values.double(), edges) + FIRST_VALUE  # [V] in FIRST_VALUE .. FIRST_VALUE + bins - 1
    codes = torch.where(column.missing, MISSING, codes)
    codes[0] = NO_ITEM
    vocab = tuple(f"bin {j}" for j in range(bins))
    return FeatureColumn(column.name, "categorical", codes, column.missing, vocab)


def feature_popularity_scores(features: ItemFeatures, popularity: Tensor) -> Tensor:
    """``[n_items + 1]`` float32: the sum over the categorical, multi-valued and (binned) numeric features of
    ``log1p`` of the item's ``value_popularity`` (row 0: padding, 0)."""
    columns = [binned(c) if c.kind == "numeric" else c for c in features.columns if c.kind != "vector"]
    if not columns:
        raise ConfigError(
            "model=feature_popularity ranks items by their categorical or numeric features; the run's features "
            f"({', '.join(f'{c.name} ({c.kind})' for c in features.columns)}) have none"
        )
    skipped = [c.name for c in features.columns if c.kind == "vector"]
    if skipped:
        log.info("feature_popularity: vector features %s are not used", ", ".join(skipped))
    scores = torch.stack([torch.log1p(value_popularity(c, popularity.cpu())) for c in columns]).sum(0)  # [V]
    return tie_broken(scores)


def tie_broken(scores: Tensor, seed: int = 0) -> Tensor:
    """``scores`` ``[V]`` as their ranks ``0..V-1`` (float32, higher = better), items of equal score in a seeded
    random order: items with the same features tie, and the protocol counts a tie against the target, which
    would rank a content baseline below a random one; a served ranking breaks them somehow, so do we. Row 0: 0."""
    n = scores.numel()
    scores = scores.clone()
    scores[0] = float("-inf")  # padding: rank 0
    shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # [V]
    order = shuffled[torch.argsort(scores[shuffled], stable=True)]  # [V] ascending score, random among ties
    ranks = torch.empty(n, dtype=torch.float32)
    ranks[order] = torch.arange(n, dtype=torch.float32)
    return ranks


class FeaturePopularity(Popularity):
    """Scores = ``feature_popularity_scores`` of the run's item features (a checkpoint keeps them as a buffer)."""

    uses_features = True
    item_scores: Tensor

    def __init__(
        self,
        n_items: int,
        item_popularity: Tensor | None = None,
        item_features: ItemFeatures | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(n_items, item_popularity, **settings)
        scores = torch.zeros(n_items + 1)  # [n_items + 1] a checkpoint's state fills it
        if item_features is not None:
            scores = feature_popularity_scores(item_features, self.item_popularity)
        elif item_popularity is not None:
            raise ConfigError("model=feature_popularity ranks items by their features: set features=<name>")
        self.register_buffer("item_scores", scores)

    def score(self, items: Tensor, times: Tensor | None = None) -> Tensor:
        return self.item_scores[None, :].expand(items.shape[0], -1)  # [B, n_items + 1]
