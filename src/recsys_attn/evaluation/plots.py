"""Comparison plots (PNG): each metric with its interval per run, and ndcg@10 by segment."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from recsys_attn.atomic import write_atomic
from recsys_attn.evaluation.runs import Run
from recsys_attn.evaluation.segments import segment_order

log = logging.getLogger(__name__)

INTERVALS_FILE = "intervals.png"
SEGMENTS_FILE = "segments_ndcg@10.png"


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("no plots: matplotlib is not installed (pip install matplotlib)")
        return None
    return plt


def _save(fig: Any, path: Path) -> Path:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def plot_intervals(table: pl.DataFrame, metrics: Sequence[str], out_dir: Path) -> Path | None:
    """One panel per metric: each run's mean with its 95% interval."""
    plt = _pyplot()
    if plt is None or not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    runs = table["run"].to_list()
    for ax, m in zip(axes[0], metrics, strict=True):
        mean, lo, hi = table[m].to_numpy(), table[f"{m}_lo"].to_numpy(), table[f"{m}_hi"].to_numpy()
        ax.errorbar(range(len(runs)), mean, yerr=[mean - lo, hi - mean], fmt="o", capsize=4)
        ax.set_xticks(range(len(runs)), runs, rotation=30, ha="right", fontsize=7)
        ax.set_title(m)
    fig.tight_layout()
    path = _save(fig, out_dir / INTERVALS_FILE)
    plt.close(fig)
    return path


def plot_segments(runs: Sequence[Run], split: str, out_dir: Path, metric: str = "ndcg@10") -> Path | None:
    """Grouped bars: ``metric`` of each run in each segment (``segments/<split>/<segment>/<metric>``)."""
    prefix = f"segments/{split}/"
    segments = sorted(
        {k[len(prefix) : -len(metric) - 1] for r in runs for k in r.metrics if k.startswith(prefix)},
        key=segment_order,
    )
    segments = [s for s in segments if any(f"{prefix}{s}/{metric}" in r.metrics for r in runs)]
    plt = _pyplot()
    if plt is None or not segments:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(segments)), 3.5))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        values = [run.metrics.get(f"{prefix}{s}/{metric}", float("nan")) for s in segments]
        ax.bar([j + i * width for j in range(len(segments))], values, width, label=run.name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(segments))], segments, rotation=20, fontsize=8)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out_dir / SEGMENTS_FILE)
    plt.close(fig)
    return path
