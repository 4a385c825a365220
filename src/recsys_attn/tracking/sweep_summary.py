"""One table of every run of a Hydra multirun: ``<sweep dir>/summary.csv``.

Registered in ``conf/hydra/default.yaml``, so every sweep writes it, e.g.
``python -m recsys_attn.train -m model.hidden_size=32,64 model.num_blocks=1,2``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from recsys_attn.atomic import write_atomic
from recsys_attn.evaluation.outputs import METRICS_FILE
from recsys_attn.evaluation.runs import OVERRIDES_FILE, natural_key, read_metrics

log = logging.getLogger(__name__)


def _read_overrides(job_dir: Path) -> str | None:
    """The job's command-line overrides, space-separated (None when Hydra saved none)."""
    path = job_dir / OVERRIDES_FILE
    if not path.is_file():
        return None
    overrides = OmegaConf.load(path)
    if not isinstance(overrides, ListConfig):
        raise ValueError(f"{path}: expected a list of overrides, got {type(overrides).__name__}")
    return " ".join(str(o) for o in overrides)


def summarize_sweep(sweep_dir: str | Path) -> pl.DataFrame:
    """One row per job under ``sweep_dir``: ``job`` (its folder), ``overrides``, then every metric.

    A job is a folder holding ``metrics.json`` or ``.hydra/overrides.yaml``; a job without metrics (a failed
    run) keeps its row, with null metrics. Metric columns are sorted by name; rows by job number.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
    job_dirs = {p.parent for p in sweep_dir.glob(f"**/{METRICS_FILE}")}
    job_dirs |= {p.parent.parent for p in sweep_dir.glob(f"**/{OVERRIDES_FILE}")}
    job_dirs.discard(sweep_dir)  # a single run's own files, not a job of a sweep
    jobs = sorted(((d.relative_to(sweep_dir).as_posix(), d) for d in job_dirs), key=lambda j: natural_key(j[0]))

    rows: list[dict[str, Any]] = []
    for name, job_dir in jobs:
        metrics_path = job_dir / METRICS_FILE
        metrics = read_metrics(metrics_path) if metrics_path.is_file() else {}
        if not metrics:
            log.warning("sweep job %s has no metrics (%s missing or empty)", name, metrics_path)
        rows.append({"job": name, "overrides": _read_overrides(job_dir), **metrics})
    metric_names = sorted({k for row in rows for k in row} - {"job", "overrides"})
    schema = {"job": pl.String, "overrides": pl.String, **dict.fromkeys(metric_names, pl.Float64)}
    return pl.DataFrame(rows, schema=schema)


def write_sweep_summary(sweep_dir: str | Path, filename: str = "summary.csv") -> Path:
    """Write :func:`summarize_sweep` as CSV into ``sweep_dir``; returns the file's path."""
    summary = summarize_sweep(sweep_dir)
    path = Path(sweep_dir) / filename
    write_atomic(path, summary.write_csv)
    metrics = summary.drop("job", "overrides")
    n_with_metrics = (
        int(metrics.select(pl.any_horizontal(pl.all().is_not_null())).to_series().sum()) if metrics.width else 0
    )
    log.info("sweep summary of %d runs (%d with metrics): %s", summary.height, n_with_metrics, path)
    return path


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, collect each job's metrics and overrides into one CSV."""

    def __init__(self, filename: str = "summary.csv") -> None:
        self.filename = filename
        self._sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Resolved once, at the start: the default sweep dir holds a ${now:...} timestamp.
        self._sweep_dir = Path(str(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self._sweep_dir or Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            log.warning("no sweep summary: sweep directory %s does not exist (no job ran?)", sweep_dir)
            return
        write_sweep_summary(sweep_dir, self.filename)
