"""Runs side by side: metrics with bootstrap intervals, and each run against the first with a paired test.

The paired test is a paired bootstrap over users: the per-user differences are resampled with replacement,
centred on their observed mean, and the two-sided p-value is the share of resampled means at least as far
from 0 as the observed one (``evaluation.bootstrap.paired_bootstrap_pvalue``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import torch

from recsys_attn.evaluation.bootstrap import bootstrap_ci, paired_bootstrap_pvalue
from recsys_attn.evaluation.runs import Run

TEST_NAME = "paired bootstrap over users (two-sided)"


def pairing_problem(base: Run, other: Run) -> str | None:
    """Why ``other`` cannot be paired with ``base`` (different users, targets or protocol), or None."""
    keys = ["user_id", "target_id", "history_len"]
    if base.per_user.height != other.per_user.height or not base.per_user.select(keys).equals(
        other.per_user.select(keys)
    ):
        return "different users or targets"
    if base.protocol is not None and other.protocol is not None and base.protocol != other.protocol:
        diff = sorted(k for k in base.protocol if base.protocol[k] != other.protocol.get(k))
        return f"different protocol ({', '.join(diff)})"
    return None


def common_metrics(runs: Sequence[Run]) -> list[str]:
    """Accuracy metrics every run has, in the first run's order."""
    shared = set.intersection(*(set(r.accuracy_metrics) for r in runs))
    return [m for m in runs[0].accuracy_metrics if m in shared]


def compare(runs: Sequence[Run], n_samples: int = 10_000, seed: int = 0, alpha: float = 0.05) -> pl.DataFrame:
    """One row per run: ``run`` (its name), ``path`` (its directory), ``overrides``, ``users``, each metric with
    ``_lo``/``_hi``; then, against the first run, ``paired`` (``yes`` or why not), ``diff_<m>``,
    ``diff_<m>_lo``/``_hi`` and ``p_<m>``."""
    metrics = common_metrics(runs)
    base = runs[0]
    rows: list[dict[str, Any]] = []
    for i, run in enumerate(runs):
        table = _values(run, metrics)  # [U, M]
        lo, hi = bootstrap_ci(table, n_samples, seed)  # [M], [M]
        row: dict[str, Any] = {
            "run": run.name,
            "path": str(run.path),
            "overrides": run.overrides,
            "users": run.per_user.height,
        }
        for j, m in enumerate(metrics):
            row.update({m: float(table[:, j].mean()), f"{m}_lo": float(lo[j]), f"{m}_hi": float(hi[j])})
        problem = None if i == 0 else pairing_problem(base, run)
        row["paired"] = "baseline" if i == 0 else problem or "yes"
        for m in metrics:  # null where there is no pairing (the baseline, a refused run)
            row.update(dict.fromkeys([f"diff_{m}", f"diff_{m}_lo", f"diff_{m}_hi", f"p_{m}", f"significant_{m}"]))
        if i > 0 and problem is None:
            diffs = table - _values(base, metrics)  # [U, M] same users in the same order (checked)
            d_lo, d_hi = bootstrap_ci(diffs, n_samples, seed)
            p = paired_bootstrap_pvalue(diffs, n_samples, seed)  # [M]
            for j, m in enumerate(metrics):
                row[f"diff_{m}"] = float(diffs[:, j].mean())
                row[f"diff_{m}_lo"], row[f"diff_{m}_hi"] = float(d_lo[j]), float(d_hi[j])
                row[f"p_{m}"] = float(p[j])
                row[f"significant_{m}"] = bool(p[j] < alpha)
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def _values(run: Run, metrics: Sequence[str]) -> torch.Tensor:
    """Per-user values ``[U, M]`` of ``metrics``, users in id order."""
    return torch.tensor(run.per_user.select(metrics).to_numpy(), dtype=torch.float64)


def to_markdown(table: pl.DataFrame, metrics: Sequence[str], split: str, n_samples: int, alpha: float) -> str:
    """``comparison.md``: metrics with 95% intervals per run, then each paired difference with its p-value."""
    lines = [
        f"# Comparison on {split} ({table['users'][0]} users in the baseline)",
        "",
        f"Means with 95% bootstrap intervals over users ({n_samples} samples).",
        "",
        "| run | overrides | users | " + " | ".join(metrics) + " |",
        "|---" * (3 + len(metrics)) + "|",
    ]
    for row in table.iter_rows(named=True):
        cells = [f"{row[m]:.4f} [{row[f'{m}_lo']:.4f}, {row[f'{m}_hi']:.4f}]" for m in metrics]
        lines.append(f"| {row['run']} | {row['overrides'] or ''} | {row['users']} | " + " | ".join(cells) + " |")
    base = table["run"][0]
    lines += [
        "",
        f"## Against the baseline {base}",
        "",
        f"Difference of means (run - baseline) with its 95% interval; p-value of a {TEST_NAME}, "
        f"{n_samples} samples; * = p < {alpha}.",
        "",
        "| run | paired | " + " | ".join(metrics) + " |",
        "|---" * (2 + len(metrics)) + "|",
    ]
    for row in table.iter_rows(named=True):
        if row["paired"] == "baseline":
            continue
        if row["paired"] != "yes":
            lines.append(f"| {row['run']} | refused: {row['paired']} |" + " |" * len(metrics))
            continue
        cells = [
            f"{row[f'diff_{m}']:+.4f} [{row[f'diff_{m}_lo']:+.4f}, {row[f'diff_{m}_hi']:+.4f}] "
            f"p={row[f'p_{m}']:.4f}{'*' if row[f'significant_{m}'] else ''}"
            for m in metrics
        ]
        lines.append(f"| {row['run']} | yes | " + " | ".join(cells) + " |")
    lines += ["", "## Runs", "", "| run | directory |", "|---|---|"]
    lines += [f"| {row['run']} | {row['path']} |" for row in table.iter_rows(named=True)]
    return "\n".join(lines) + "\n"
