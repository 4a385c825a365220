"""Statistics of an evaluation pass from its per-user rows: bootstrap intervals and segment metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recsys_attn.evaluation.bootstrap import bootstrap_ci
from recsys_attn.evaluation.metrics import per_user_values
from recsys_attn.evaluation.segments import history_buckets, history_edges, popularity_segments


def interval_metrics(values: dict[str, Tensor], prefix: str, n_samples: int, seed: int) -> dict[str, float]:
    """``{prefix}<metric>_lo`` and ``_hi``: 95% percentile bootstrap interval over users of each metric's mean."""
    if n_samples <= 0 or not values or next(iter(values.values())).numel() == 0:
        return {}
    names = list(values)
    table = torch.stack([values[n].double().cpu() for n in names], dim=1)  # [U, M]
    lo, hi = bootstrap_ci(table, n_samples, seed)  # [M], [M]
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        out[f"{prefix}{name}_lo"] = float(lo[j])
        out[f"{prefix}{name}_hi"] = float(hi[j])
    return out


def segment_metrics(values: dict[str, Tensor], segments: Tensor, names: Sequence[str], prefix: str) -> dict[str, float]:
    """``{prefix}<segment>/<metric>`` (the mean over its users) and ``{prefix}<segment>/users`` per segment."""
    counts = torch.bincount(segments, minlength=len(names)).double()  # [G]
    out: dict[str, float] = {}
    for g, seg in enumerate(names):
        out[f"{prefix}{seg}/users"] = float(counts[g])
    for name, v in values.items():
        sums = torch.zeros(len(names), dtype=torch.float64).index_add_(0, segments, v.double().cpu())  # [G]
        means = sums / counts.clamp_min(1.0)  # [G]
        for g, seg in enumerate(names):
            out[f"{prefix}{seg}/{name}"] = float(means[g]) if counts[g] > 0 else float("nan")
    return out


def stage_statistics(
    rows: dict[str, Tensor],
    stage: str,
    ks: Sequence[int],
    popularity: Tensor,
    bootstrap: int,
    seed: int,
    edges: Sequence[int] | None,
    shares: Sequence[float],
) -> dict[str, float]:
    """Intervals (``{stage}/<metric>_lo``/``_hi``) and segments (``segments/{stage}/<segment>/<metric>``)."""
    values = per_user_values(rows["ranks"].cpu(), ks)  # name -> [U]
    out = interval_metrics(values, f"{stage}/", bootstrap, seed)
    if rows["ranks"].numel() == 0:
        return out
    buckets, bucket_names = history_buckets(rows["history_len"], history_edges(rows["history_len"], edges))
    out.update(segment_metrics(values, buckets, bucket_names, f"segments/{stage}/"))
    groups, group_names = popularity_segments(rows["targets"], popularity, shares)
    out.update(segment_metrics(values, groups, group_names, f"segments/{stage}/"))
    return out
