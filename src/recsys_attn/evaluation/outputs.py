"""An evaluation's files: ``metrics.json`` and ``per_user.parquet`` (one row per evaluated user and split, with
original ids and every metric's value), written together."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import torch
from torch import Tensor

from recsys_attn.atomic import write_atomic, write_together
from recsys_attn.data.prepared import Prepared
from recsys_attn.evaluation.metrics import per_user_values

METRICS_FILE = "metrics.json"
PER_USER_FILE = "per_user.parquet"
KEY_COLUMNS = ("split", "user_id", "history_len", "target_id", "rank")
"""Columns before the metrics; the means of the metric columns of a split are its ``metrics.json`` values."""


def per_user_frame(rows: Mapping[str, Tensor], split: str, ks: Sequence[int], prepared: Prepared) -> pl.DataFrame:
    """The rows of one evaluation pass (``RecModule.per_user[split]``) with original ids and metric values."""
    users = pl.Series(rows["users"].cpu().numpy()) - 1  # ids are 1..n: row index in the id tables
    items = pl.Series(rows["targets"].cpu().numpy()) - 1
    values = per_user_values(rows["ranks"].cpu(), ks)
    return pl.DataFrame(
        {
            "split": pl.Series([split] * len(users), dtype=pl.String),
            "user_id": prepared.users["user_id"].gather(users),
            "history_len": pl.Series(rows["history_len"].cpu().numpy(), dtype=pl.Int64),
            "target_id": prepared.items["item_id"].gather(items),
            "rank": pl.Series(rows["ranks"].cpu().numpy(), dtype=pl.Int64),
            **{name: pl.Series(v.numpy(), dtype=pl.Float64) for name, v in values.items()},
        }
    )


def with_metric_values(rows: pl.DataFrame, ks: Sequence[int]) -> pl.DataFrame:
    """Per-user rows of ``KEY_COLUMNS`` only (a kept run's slim copy) with every metric column derived from ``rank``,
    as ``per_user_frame`` wrote them: the same values, bit for bit."""
    ranks = torch.tensor(rows["rank"].to_numpy(), dtype=torch.int64)  # [U] (a copy: polars hands out read-only arrays)
    values = per_user_values(ranks, ks)
    return rows.with_columns(**{name: pl.Series(v.numpy(), dtype=pl.Float64) for name, v in values.items()})


def slim_per_user(source: Path, dest: Path) -> None:
    """Copy the per-user rows at ``source`` to ``dest`` with ``KEY_COLUMNS`` only: the metrics follow from the rank
    (``with_metric_values``), and a kept copy (``make reproduce``) takes half the room."""
    rows = pl.read_parquet(source).select(KEY_COLUMNS)
    rows.write_parquet(dest, compression="zstd", compression_level=19)


def per_user_table(
    per_user: Mapping[str, Mapping[str, Tensor]], splits: Sequence[str], ks: Sequence[int], prepared: Prepared | None
) -> pl.DataFrame:
    """The rows of ``per_user.parquet``: the module's per-user rows (``RecModule.per_user``) of ``splits``."""
    if prepared is None:
        raise RuntimeError("per_user.parquet needs the id tables: set the datamodule up first")
    return pl.concat([per_user_frame(per_user[s], s, ks, prepared) for s in splits if s in per_user])


def write_per_user(
    run_dir: str | Path,
    per_user: Mapping[str, Mapping[str, Tensor]],
    splits: Sequence[str],
    ks: Sequence[int],
    prepared: Prepared | None,
) -> Path:
    """Write ``run_dir/per_user.parquet`` from the module's per-user rows of ``splits``; returns its path."""
    frame = per_user_table(per_user, splits, ks, prepared)
    path = Path(run_dir) / PER_USER_FILE
    write_atomic(path, frame.write_parquet)
    return path


def write_evaluation(
    run_dir: str | Path,
    metrics: Mapping[str, float],
    per_user: Mapping[str, Mapping[str, Tensor]],
    splits: Sequence[str],
    ks: Sequence[int],
    prepared: Prepared | None,
) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``per_user.parquet`` into ``run_dir`` together; returns their paths.

    Both appear or neither (``atomic.write_together``, ``metrics.json`` last): a failure (a full disk) leaves
    an earlier pair as it was, never the metrics of one evaluation beside the rows of another.
    """
    frame = per_user_table(per_user, splits, ks, prepared)
    text = json.dumps(dict(metrics), indent=2, sort_keys=True) + "\n"
    rows_path, metrics_path = Path(run_dir) / PER_USER_FILE, Path(run_dir) / METRICS_FILE
    with write_together(rows_path, metrics_path) as staged:
        staged.write(rows_path, frame.write_parquet)
        staged.write(metrics_path, lambda tmp: tmp.write_text(text))
    return metrics_path, rows_path
