"""Cold-start ranking: a held-out target that no training sequence holds, ranked among such items only.

A cold item (training popularity 0: ``data.split.cold_items`` holds a share of the catalogue out, or an item
seen only as someone's held-out target) can only be ranked through what the model knows besides its id (item
features). The question a cold-start evaluation asks is "which of the new items will this user take", so the
target competes with the other cold items the user has not seen (ties against it, as in the full ranking);
``test_cold/*`` reports that ranking's metrics next to a random ranking's expected value (``*_random``), computed
exactly from each user's number of candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.evaluation.metrics import per_user_values, target_ranks
from recsys_attn.evaluation.summary import interval_metrics

COLD_FIELDS = ("users", "is_cold", "ranks", "candidates")
"""Per-user rows of a cold-start ranking: user_idx, whether the target is cold (the rows that count), 0-based rank
among the cold candidates, their number."""


def cold_items_of(popularity: Tensor) -> Tensor:
    """``[V]`` bool: the items no training sequence holds (``popularity`` ``[V]`` training counts; never PAD)."""
    cold = popularity == 0  # [V]
    cold[PAD] = False
    return cold


def cold_ranks(
    scores: Tensor, targets: Tensor, seen_rows: Tensor | None, seen_items: Tensor | None, cold: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Whether each user's target is cold ``[B]``, its rank among the cold items ``[B]`` and their number ``[B]``.

    Every row is ranked (no host sync to pick the cold ones); only the rows whose target is cold mean anything.

    Args:
        scores: ``[B, V]`` item scores (column 0 padding; columns past ``cold``'s length ignored).
        targets: ``[B]`` held-out items.
        seen_rows, seen_items: the users' history items ``[S]``, which are not candidates (None: no filter).
        cold: ``[V']`` bool, the cold items (``cold_items_of``).
    """
    n = cold.numel()
    rows = torch.arange(targets.numel(), device=targets.device)  # [B]
    masked = torch.where(cold[None, :], scores[:, :n].float(), float("-inf"))  # [B, V'] warm items never compete
    ranks = target_ranks(masked, targets, seen_rows, seen_items, n_items=n - 1)  # [B]
    candidates = cold[None, :].expand(targets.numel(), -1).clone()  # [B, V']
    if seen_rows is not None and seen_items is not None:
        candidates[seen_rows, seen_items] = False
    candidates[rows, targets] = True
    return cold[targets], ranks, candidates.sum(1)  # [B], [B], [B]


def random_ranking_values(candidates: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Each metric's expected value ``[C]`` when the target's rank is uniform over its ``candidates`` ``[C]``."""
    if candidates.numel() == 0:
        return {name: torch.zeros(0, dtype=torch.float64) for name in per_user_values(candidates, ks)}
    m = candidates.long().cpu().clamp_min(1)  # [C]
    at = per_user_values(torch.arange(int(m.max())), ks)  # name -> [M] value at each rank
    return {name: torch.cumsum(v, 0)[m - 1] / m.double() for name, v in at.items()}  # name -> [C]


def cold_statistics(
    rows: dict[str, Tensor], stage: str, ks: Sequence[int], bootstrap: int, seed: int
) -> dict[str, float]:
    """``{stage}_cold/<metric>``, its interval (``_lo``/``_hi``), ``_random`` and ``users``; {} without cold users."""
    keep = rows["is_cold"].bool().cpu()  # [U]
    if not bool(keep.any()):
        return {}
    prefix = f"{stage}_cold/"
    values = per_user_values(rows["ranks"].cpu()[keep], ks)  # name -> [C]
    random = random_ranking_values(rows["candidates"].cpu()[keep], ks)  # name -> [C]
    out = {f"{prefix}users": float(keep.sum())}
    out.update({f"{prefix}{name}": float(v.mean()) for name, v in values.items()})
    out.update({f"{prefix}{name}_random": float(v.mean()) for name, v in random.items()})
    out.update(interval_metrics(values, prefix, bootstrap, seed))
    return out
