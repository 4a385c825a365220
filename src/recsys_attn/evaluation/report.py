"""The comparison report of finished runs: ``comparison.md``, ``comparison.csv`` and the plots."""

from __future__ import annotations

import logging
from pathlib import Path

from recsys_attn.atomic import write_atomic
from recsys_attn.evaluation.comparison import common_metrics, compare, to_markdown
from recsys_attn.evaluation.plots import plot_intervals, plot_segments
from recsys_attn.evaluation.runs import expand_runs, load_run

log = logging.getLogger(__name__)


def compare_runs(
    paths: list[str],
    out_dir: str | Path,
    split: str = "test",
    samples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Path:
    """Compare the runs at ``paths`` (sweep directories expand to their jobs); returns ``comparison.md``."""
    dirs = expand_runs(paths)
    names = [d.name for d in dirs]
    if len(set(names)) < len(names):  # sweep jobs 0, 1, ... of two sweeps: name them by their sweep too
        names = [f"{d.parent.name}/{d.name}" for d in dirs]
    runs = [load_run(d, split, n) for d, n in zip(dirs, names, strict=True)]
    table = compare(runs, samples, seed, alpha)
    metrics = common_metrics(runs)
    out = Path(out_dir)
    markdown = to_markdown(table, metrics, split, samples, alpha)
    md_path = out / "comparison.md"
    write_atomic(md_path, lambda tmp: tmp.write_text(markdown))
    write_atomic(out / "comparison.csv", table.write_csv)
    shown = [m for m in ("ndcg@10", "hr@10", "mrr") if m in metrics] or metrics[:3]
    plot_intervals(table, shown, out)
    plot_segments(runs, split, out)
    print(markdown)
    log.info("comparison of %d runs written to %s", len(runs), out)
    return md_path
