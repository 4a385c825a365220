"""Finished runs read back for comparison: metrics, per-user rows, overrides and evaluation protocol."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from recsys_attn.errors import ConfigError
from recsys_attn.evaluation.outputs import KEY_COLUMNS, PER_USER_FILE
from recsys_attn.sweep_summary import METRICS_FILE, _natural_key, _read_metrics, _read_overrides

CONFIG_FILE = ".hydra/config.yaml"
NOISE_OVERRIDES = ("hydra.", "paths.", "trainer.accelerator", "ckpt_path")
"""Overrides that say where a run ran, not what it is: left out of the comparison's ``overrides`` column."""


@dataclass(frozen=True)
class Run:
    """One run directory with ``metrics.json`` and ``per_user.parquet``."""

    name: str
    path: Path
    overrides: str
    metrics: dict[str, float]
    per_user: pl.DataFrame
    """Rows of the compared split only."""
    protocol: dict[str, Any] | None
    """What must agree for two runs to be paired (data, preparation, split, filtering); None when unknown."""

    @property
    def accuracy_metrics(self) -> list[str]:
        return [c for c in self.per_user.columns if c not in KEY_COLUMNS]


def expand_runs(paths: list[str]) -> list[Path]:
    """Run directories: each path itself, or, for a sweep directory, its jobs in job order."""
    out: list[Path] = []
    for i, value in enumerate(paths):
        path = Path(value)
        if not path.is_dir():
            raise ConfigError(f"runs[{i}]: no directory at {path}")
        if (path / PER_USER_FILE).is_file():
            out.append(path)
            continue
        jobs = sorted({p.parent for p in path.glob(f"*/{PER_USER_FILE}")}, key=lambda p: _natural_key(p.name))
        if not jobs:
            raise ConfigError(f"runs[{i}]: {path} holds no {PER_USER_FILE}, nor do its subfolders (a sweep's jobs)")
        out.extend(jobs)
    return out


def run_protocol(path: Path) -> dict[str, Any] | None:
    """The evaluation protocol of a run from its saved Hydra config (None when it has none)."""
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        return None
    cfg = OmegaConf.load(config_path)
    if not isinstance(cfg, DictConfig) or "data" not in cfg:
        return None
    data = cfg.data

    def plain(key: str) -> Any:
        node = OmegaConf.select(data, key)
        return OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node

    model_filter = OmegaConf.select(cfg, "model.filter_seen")
    eval_filter = OmegaConf.select(cfg, "eval.filter_seen")
    return {
        "data": plain("source.name"),
        "preparation": plain("preparation"),
        "split": plain("split"),
        "max_eval_users": plain("max_eval_users"),
        "filter_seen": model_filter if model_filter is not None else eval_filter if eval_filter is not None else True,
    }


def load_run(path: Path, split: str, name: str | None = None) -> Run:
    """Read the run at ``path``; its per-user rows of ``split``."""
    rows = pl.read_parquet(path / PER_USER_FILE).filter(pl.col("split") == split)
    if rows.height == 0:
        raise ConfigError(f"split: {path / PER_USER_FILE} has no rows of split {split!r}")
    metrics_path = path / METRICS_FILE
    metrics = _read_metrics(metrics_path) if metrics_path.is_file() else {}
    overrides = " ".join(o for o in (_read_overrides(path) or "").split() if not o.startswith(NOISE_OVERRIDES))
    return Run(name or path.name, path, overrides, metrics, rows.sort("user_id"), run_protocol(path))
