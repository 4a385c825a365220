"""User segments: history-length buckets and head/torso/tail target popularity."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recsys_attn.constants import PAD

HISTORY_NAMES = ("short", "medium", "long")
"""Bucket names when there are two edges (three buckets, the default tertiles)."""
POPULARITY_NAMES = ("head", "torso", "tail")


def history_edges(history_len: Tensor, edges: Sequence[int] | None) -> Tensor:
    """Bucket edges ``[E]``: ``edges`` as given, or the tertiles of the users' history lengths ``[U]``."""
    if edges is not None:
        return torch.tensor(list(edges), dtype=torch.float64)
    if history_len.numel() == 0:
        return torch.zeros(2, dtype=torch.float64)
    return torch.quantile(history_len.double().cpu(), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))


def history_buckets(history_len: Tensor, edges: Tensor) -> tuple[Tensor, list[str]]:
    """Bucket of each user ``[U]`` and the bucket names: bucket ``j`` holds ``edges[j-1] < length <= edges[j]``."""
    bucket = torch.bucketize(history_len.double().cpu(), edges)  # [U] in 0..E
    if edges.numel() == 2:
        return bucket, [f"history_{n}" for n in HISTORY_NAMES]
    bounds = [int(e) for e in edges.tolist()]
    lows = [0, *(b + 1 for b in bounds)]
    names = [f"history_{lo}-{hi}" for lo, hi in zip(lows, bounds, strict=False)] + [f"history_{lows[-1]}+"]
    return bucket, names


def segment_order(name: str) -> tuple[int, float, str]:
    """Sort key of segment names: history buckets from short to long, then target groups from head to tail.

    Named tertiles go by ``HISTORY_NAMES``, ranged buckets (``history_11-100``) by their lower bound, so
    ``history_101+`` comes after ``history_11-100``, not between it and ``history_0-10``.
    """
    kind, _, bucket = name.partition("_")
    if kind == "history":
        if bucket in HISTORY_NAMES:
            return (0, float(HISTORY_NAMES.index(bucket)), name)
        low = bucket.split("-")[0].rstrip("+")
        return (0, float(low) if low.isdigit() else float("inf"), name)
    if kind == "target" and bucket in POPULARITY_NAMES:
        return (1, float(POPULARITY_NAMES.index(bucket)), name)
    return (2, 0.0, name)


def item_popularity_groups(popularity: Tensor, shares: Sequence[float]) -> Tensor:
    """Group of each item ``[V]``: 0 = head, 1 = torso, 2 = tail (PAD and unseen items: tail).

    Items are sorted by training count, most popular first; the head holds the items before the first
    ``shares[0]`` of all training interactions is reached, the tail those after ``shares[1]`` (the
    short-head / long-tail split of Abdollahpouri et al., 20% / 80% by default).
    """
    counts = popularity.double().cpu().clone()  # [V]
    counts[PAD] = 0.0
    order = counts.argsort(descending=True, stable=True)  # [V]
    sorted_counts = counts[order]  # [V]
    before = (torch.cumsum(sorted_counts, 0) - sorted_counts) / sorted_counts.sum().clamp_min(1.0)  # [V] share before
    group_sorted = torch.bucketize(before, torch.tensor(list(shares), dtype=torch.float64), right=True)  # [V]
    group_sorted = torch.where(sorted_counts > 0, group_sorted, len(POPULARITY_NAMES) - 1)  # never trained on: tail
    groups = torch.empty_like(group_sorted)
    groups[order] = group_sorted
    return groups


def popularity_segments(targets: Tensor, popularity: Tensor, shares: Sequence[float]) -> tuple[Tensor, list[str]]:
    """Popularity group of each user's target ``[U]`` and the group names (``target_head`` ...)."""
    groups = item_popularity_groups(popularity, shares)[targets.cpu()]  # [U]
    return groups, [f"target_{n}" for n in POPULARITY_NAMES]
