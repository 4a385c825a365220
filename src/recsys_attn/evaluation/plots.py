"""Comparison plots (PNG): each metric with its interval per run, and ndcg@10 by segment.

Figures are built with matplotlib's object API (``Figure``), not ``pyplot``: no backend is chosen and no
global figure is left open in the caller's process (a notebook keeps its own backend).
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from recsys_attn.evaluation.runs import Run
from recsys_attn.evaluation.segments import segment_order

log = logging.getLogger(__name__)

INTERVALS_FILE = "intervals.png"
SEGMENTS_FILE = "segments_ndcg@10.png"
LABEL_WIDTH = 24
"""Run labels wider than this (in characters) are wrapped onto several lines in the plots."""


def _figure(**kwargs: Any) -> Any | None:
    """A new matplotlib ``Figure`` (None, with a warning, without matplotlib)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("no plots: matplotlib is not installed (pip install matplotlib)")
        return None
    return Figure(**kwargs)


def _wrapped(label: str) -> str:
    return "\n".join(textwrap.wrap(label, LABEL_WIDTH, break_on_hyphens=False)) or label


def save_png(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` as a PNG."""
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")


def intervals_figure(table: pl.DataFrame, metrics: Sequence[str]) -> Any | None:
    """One panel per metric: each run's mean with its 95% interval (None without metrics or matplotlib)."""
    if not metrics:
        return None
    fig = _figure(figsize=(3.2 * len(metrics), 3.2))
    if fig is None:
        return None
    axes = fig.subplots(1, len(metrics), squeeze=False)
    runs = [_wrapped(r) for r in table["run"].to_list()]
    for ax, m in zip(axes[0], metrics, strict=True):
        mean, lo, hi = table[m].to_numpy(), table[f"{m}_lo"].to_numpy(), table[f"{m}_hi"].to_numpy()
        ax.errorbar(range(len(runs)), mean, yerr=[mean - lo, hi - mean], fmt="o", capsize=4)
        ax.set_xticks(range(len(runs)), runs, rotation=30, ha="right", fontsize=7)
        ax.set_title(m)
    fig.tight_layout()
    return fig


def segments_figure(runs: Sequence[Run], split: str, metric: str = "ndcg@10") -> Any | None:
    """Grouped bars: ``metric`` of each run in each segment (``segments/<split>/<segment>/<metric>``)."""
    prefix = f"segments/{split}/"
    segments = sorted(
        {k[len(prefix) : -len(metric) - 1] for r in runs for k in r.metrics if k.startswith(prefix)},
        key=segment_order,
    )
    segments = [s for s in segments if any(f"{prefix}{s}/{metric}" in r.metrics for r in runs)]
    if not segments:
        return None
    fig = _figure(figsize=(max(6.0, 1.2 * len(segments)), 3.5))
    if fig is None:
        return None
    ax = fig.subplots()
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        values = [run.metrics.get(f"{prefix}{s}/{metric}", float("nan")) for s in segments]
        ax.bar([j + i * width for j in range(len(segments))], values, width, label=run.name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(segments))], segments, rotation=20, fontsize=8)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
