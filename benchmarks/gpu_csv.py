"""benchmarks/gpu.csv: one machine-readable row per timed GPU training run (issue 27 §3).

``bench_train.py --gpu-csv PATH --target 0.18`` appends a row when its run ends; the GPU batch
(benchmarks/gpu/batch.sh) passes a copy of benchmarks/gpu.csv and brings it back in ``$OUT``.
``seconds_to_target`` counts training seconds only (validation passes excluded), from the start of the fit to
the end of the first epoch whose ``val/ndcg@10`` reached ``target_ndcg@10``; empty when no validation did.
``test_ndcg@10`` is the test figure of the checkpoint the run selected on validation.
"""

from __future__ import annotations

import csv
import fcntl
import math
from collections.abc import Mapping
from pathlib import Path

import polars as pl

COLUMNS = (
    "date",
    "gpu",
    "model",
    "preset",
    "batch",
    "s_per_epoch_train",
    "s_per_val",
    "epochs",
    "seconds_to_target",
    "target_ndcg@10",
    "test_ndcg@10",
    "commit",
    "command",
)
METRIC = "val/ndcg@10"


def train_seconds_to_target(metrics_csv: Path, target: float) -> float:
    """Training seconds to the end of the first epoch whose ``val/ndcg@10`` is at least ``target`` (nan: never).

    ``metrics_csv`` is the run's CSV log (``logger=csv``): Lightning writes an epoch's training time
    (``time/epoch_s``) and its validation metrics on separate lines of the same epoch.
    """
    log = pl.read_csv(metrics_csv, infer_schema_length=None)
    missing = {"epoch", "time/epoch_s", METRIC} - set(log.columns)
    if missing:
        raise ValueError(f"{metrics_csv}: no column {sorted(missing)} (a run with validation and logger=csv has them)")
    epochs = (
        log.group_by("epoch")
        .agg(pl.col("time/epoch_s").drop_nulls().last(), pl.col(METRIC).drop_nulls().last())
        .sort("epoch")
        .with_columns(pl.col("time/epoch_s").cum_sum().alias("train_s"))
    )
    reached = epochs.filter(pl.col(METRIC) >= target)
    return float(reached["train_s"][0]) if reached.height else math.nan


def append_row(path: Path, row: Mapping[str, object]) -> None:
    """Append ``row`` (every name of ``COLUMNS``, nothing else) to the CSV at ``path``, its header first when new.

    Floats are written to 4 decimals, nan as an empty field; the file is locked while it is written.
    """
    if set(row) != set(COLUMNS):
        raise ValueError(f"a gpu.csv row has the columns {list(COLUMNS)}, not {sorted(row)}")
    cells = {name: _cell(value) for name, value in row.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        header = fh.readline().strip()
        if header and header != ",".join(COLUMNS):
            raise ValueError(f"{path}: its header is not {','.join(COLUMNS)}")
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if not header:
            writer.writeheader()
        writer.writerow(cells)


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return value
