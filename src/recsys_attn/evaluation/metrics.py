"""Full-catalogue ranking metrics (docs/PROTOCOL.md) as DDP-safe torchmetrics Metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from recsys_attn.constants import PAD


def target_ranks(
    scores: Tensor,
    targets: Tensor,
    seen_rows: Tensor | None = None,
    seen_items: Tensor | None = None,
    n_items: int | None = None,
) -> Tensor:
    """0-based rank of each target among the real items ``1..n_items`` (ties count against it).

    Args:
        scores: ``[B, V]`` item scores; column 0 is padding, columns past ``n_items`` (MASK) ignored.
        targets: ``[B]`` held-out item ids.
        seen_rows, seen_items: history items (row, item) removed from the ranking, unless the target.
        n_items: catalogue size (default ``V - 1``).

    Returns:
        ``[B]`` number of candidates scoring greater than or equal to the target (or NaN); a target
        whose own score is not finite ranks after every candidate.
    """
    n_items = scores.shape[1] - 1 if n_items is None else n_items
    scores = scores[:, : n_items + 1].float()  # [B, n_items + 1]
    rows = torch.arange(scores.shape[0], device=scores.device)  # [B]
    target_score = scores[rows, targets]  # [B]
    competes = torch.ones_like(scores, dtype=torch.bool)  # [B, n_items + 1]
    if seen_rows is not None and seen_items is not None:
        competes[seen_rows, seen_items] = False
    competes[:, PAD] = False
    competes[rows, targets] = False  # the target is not its own competitor
    # A diverged model must not score well: NaN competitors beat the target, a non-finite target loses to all.
    beats = (scores >= target_score[:, None]) | scores.isnan() | ~target_score.isfinite()[:, None]  # [B, n_items + 1]
    return (beats & competes).sum(1)  # [B]


def sampled_ranks(
    scores: Tensor,
    targets: Tensor,
    seen_rows: Tensor,
    seen_items: Tensor,
    n_negatives: int = 100,
    popularity: Tensor | None = None,
    n_items: int | None = None,
) -> Tensor:
    """Rank of each target among ``n_negatives`` items the user never interacted with (opt-in protocol).

    Negatives are drawn without replacement, uniformly or proportionally to ``popularity``
    (Efraimidis-Spirakis keys), from items outside the history and target.
    """
    n_items = scores.shape[1] - 1 if n_items is None else n_items
    b = scores.shape[0]
    rows = torch.arange(b, device=scores.device)  # [B]
    u = torch.rand(b, n_items + 1, device=scores.device).clamp_min(1e-12)  # [B, V]
    if popularity is None:
        keys = u
    else:
        weight = popularity[: n_items + 1].to(scores.device).float().clamp_min(1e-12)  # [V]
        keys = u.pow(1.0 / weight)  # larger key = drawn first
    keys[seen_rows, seen_items] = -1.0
    keys[rows, targets] = -1.0
    keys[:, PAD] = -1.0
    k = min(n_negatives, n_items)
    neg = keys.topk(k, dim=1).indices  # [B, k]
    valid = keys.gather(1, neg) >= 0  # [B, k] fewer candidates than k: ignore the rest
    scores = scores.float()
    neg_scores = scores.gather(1, neg)  # [B, k]
    return ((neg_scores >= scores[rows, targets][:, None]) & valid).sum(1)


def hit(ranks: Tensor, k: int) -> Tensor:
    """Per-user HR@K ``[B]``: 1 if rank < K."""
    return (ranks < k).double()


def ndcg(ranks: Tensor, k: int) -> Tensor:
    """Per-user NDCG@K ``[B]``: 1 / log2(rank + 2) if rank < K."""
    gain = 1.0 / torch.log2(ranks.double() + 2.0)  # [B]
    return torch.where(ranks < k, gain, 0.0)


def reciprocal_rank(ranks: Tensor) -> Tensor:
    """Per-user reciprocal rank ``[B]``: 1 / (rank + 1)."""
    return 1.0 / (ranks.double() + 1.0)


def per_user_values(ranks: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Every full-ranking metric of each user ``[B]``, named as ``ranking_metrics`` names them (no prefix)."""
    values: dict[str, Tensor] = {}
    for k in ks:
        values[f"hr@{k}"] = hit(ranks, k)
        values[f"ndcg@{k}"] = ndcg(ranks, k)
    values["mrr"] = reciprocal_rank(ranks)
    return values


class _RankMetric(Metric):
    """Mean of a per-user value of the rank; sum and count states reduce by summing across devices."""

    full_state_update = False
    higher_is_better = True
    total: Tensor
    count: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def value(self, ranks: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, ranks: Tensor) -> None:
        self.total += self.value(ranks).double().sum()
        self.count += ranks.numel()

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class HitRate(_RankMetric):
    """HR@K = 1 if rank < K (Recall@K with one held-out item)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def value(self, ranks: Tensor) -> Tensor:
        return hit(ranks, self.k)


class NDCG(_RankMetric):
    """NDCG@K = 1 / log2(rank + 2) if rank < K."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def value(self, ranks: Tensor) -> Tensor:
        return ndcg(ranks, self.k)


class MRR(_RankMetric):
    """Mean reciprocal rank over the full ranking: 1 / (rank + 1)."""

    def value(self, ranks: Tensor) -> Tensor:
        return reciprocal_rank(ranks)


def ranking_metrics(ks: Sequence[int], prefix: str, suffix: str = "") -> MetricCollection:
    """``{prefix}hr@K``, ``{prefix}ndcg@K`` for each K and ``{prefix}mrr``, each name ending in ``suffix``."""
    metrics: dict[str, Metric | MetricCollection] = {}
    for k in ks:
        metrics[f"hr@{k}{suffix}"] = HitRate(k)
        metrics[f"ndcg@{k}{suffix}"] = NDCG(k)
    metrics[f"mrr{suffix}"] = MRR()
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)
