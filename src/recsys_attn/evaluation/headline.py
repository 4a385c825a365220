"""The few numbers a person reads at the end of a run: headline metrics with their intervals, as text lines.

``metrics.json`` keeps every value (segments, sampled metrics, user counts); the console gets only
``hr@K``/``ndcg@K`` at the model's cut-offs and ``mrr``, one row each, a column per split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

SPLITS = ("val", "test", "val_cold", "test_cold")
"""Columns, when present: ``*_cold`` ranks the users whose target no training sequence holds among such items
(``evaluation.cold``); a line under the table gives a random ranking's value there."""


def headline_names(ks: Sequence[int]) -> list[str]:
    """``hr@K``, ``ndcg@K`` for each cut-off in ``ks`` (ascending, once each), then ``mrr``."""
    cuts = sorted(set(ks))
    return [f"{name}@{k}" for k in cuts for name in ("hr", "ndcg")] + ["mrr"]


def _cell(metrics: Mapping[str, float], key: str) -> str:
    """``0.1234 (0.1180–0.1290)``, ``0.1234`` without an interval, ``-`` when the metric is absent."""
    value = metrics.get(key)
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "nan"
    lo, hi = metrics.get(f"{key}_lo"), metrics.get(f"{key}_hi")
    if lo is None or hi is None:
        return f"{value:.4f}"
    return f"{value:.4f} ({lo:.4f}–{hi:.4f})"


def headline_lines(metrics: Mapping[str, float], ks: Sequence[int]) -> list[str]:
    """A small aligned table of the headline metrics of each split present in ``metrics`` (95% intervals)."""
    splits = [s for s in SPLITS if any(k.startswith(f"{s}/") for k in metrics)]
    if not splits:
        return []
    names = [n for n in headline_names(ks) if any(f"{s}/{n}" in metrics for s in splits)]
    rows = [["", *(f"{s} (95% interval)" for s in splits)]]
    rows += [[name, *(_cell(metrics, f"{s}/{name}") for s in splits)] for name in names]
    users = [metrics.get(f"{s}/users") for s in splits]
    if any(u is not None for u in users):
        rows.append(["users", *("-" if u is None else f"{int(u)}" for u in users)])
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines + [_random_line(metrics, s, names) for s in splits if s.endswith("_cold")]


def _random_line(metrics: Mapping[str, float], split: str, names: Sequence[str]) -> str:
    """What a random ranking of the cold candidates scores, at the largest cut-off."""
    shown = [n for n in names if n.startswith(("hr@", "ndcg@"))][-2:]
    values = ", ".join(f"{n} {metrics[f'{split}/{n}_random']:.4f}" for n in shown if f"{split}/{n}_random" in metrics)
    return f"{split}: the target among the items no training sequence holds; a random ranking scores {values}"
