"""The comparison report of finished runs: ``comparison.md``, ``comparison.csv`` and the plots, written together."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from recsys_attn.atomic import write_together
from recsys_attn.evaluation.comparison import common_metrics, compare, to_markdown
from recsys_attn.evaluation.labels import run_labels
from recsys_attn.evaluation.plots import INTERVALS_FILE, SEGMENTS_FILE, intervals_figure, save_png, segments_figure
from recsys_attn.evaluation.runs import expand_runs, load_run

log = logging.getLogger(__name__)

MARKDOWN_FILE, CSV_FILE = "comparison.md", "comparison.csv"


def compare_runs(
    paths: list[str],
    out_dir: str | Path,
    split: str = "test",
    samples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Path:
    """Compare the runs at ``paths`` (sweep directories expand to their jobs); returns ``comparison.md``.

    Runs are named by what differs between them (``evaluation.labels``). The report's files replace an
    earlier report in ``out_dir`` together (``atomic.write_together``, ``comparison.md`` last): a plot this
    report has none of (no segments, no matplotlib) is removed rather than left beside it.
    """
    dirs = expand_runs(paths)
    runs = [load_run(d, split, label) for d, label in zip(dirs, run_labels(dirs), strict=True)]
    table = compare(runs, samples, seed, alpha)
    metrics = common_metrics(runs)
    out = Path(out_dir)
    markdown = to_markdown(table, metrics, split, samples, alpha)
    shown = [m for m in ("ndcg@10", "hr@10", "mrr") if m in metrics] or metrics[:3]
    figures = {INTERVALS_FILE: intervals_figure(table, shown), SEGMENTS_FILE: segments_figure(runs, split)}
    plots = {out / name: fig for name, fig in figures.items() if fig is not None}
    md_path, csv_path = out / MARKDOWN_FILE, out / CSV_FILE
    stale = [out / name for name, fig in figures.items() if fig is None]
    with write_together(*plots, csv_path, md_path, stale=stale) as staged:
        for path, fig in plots.items():
            staged.write(path, functools.partial(save_png, fig))
        staged.write(csv_path, table.write_csv)
        staged.write(md_path, lambda tmp: tmp.write_text(markdown))
    log.info("comparison of %d runs written to %s", len(runs), out)
    return md_path
