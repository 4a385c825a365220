"""Pieces the entry points share: instantiating groups, seeding, metric files and summaries."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from recsys_attn.atomic import write_atomic
from recsys_attn.config import ConfigError, build_settings

log = logging.getLogger(__name__)

MATMUL_PRECISIONS = ("highest", "high", "medium")


def start_run(cfg: DictConfig) -> None:
    """Seed every generator from ``cfg.seed`` and set the float32 matmul precision (TF32 on GPUs when "high")."""
    L.seed_everything(cfg.seed, workers=True)
    precision = cfg.get("float32_matmul_precision") or "highest"
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"float32_matmul_precision: {precision!r} is not one of {', '.join(MATMUL_PRECISIONS)}")
    torch.set_float32_matmul_precision(precision)


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Objects of every ``_target_`` node in a group such as ``callbacks`` or ``logger``."""
    if not cfg:
        return []
    return [
        hydra.utils.instantiate(node) for node in cfg.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def check_model_keys(model_cfg: DictConfig) -> None:
    """Fail before any data work when ``model.*`` holds a key the model class does not know."""
    cls = hydra.utils.get_class(model_cfg._target_)
    values = {str(k): v for k, v in model_cfg.items() if not str(k).startswith("_")}
    build_settings(getattr(cls, "settings_class"), values, "model")  # noqa: B009


def to_float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def collect_metrics(trainer: L.Trainer, prefixes: tuple[str, ...] = ("val/", "test/")) -> dict[str, float]:
    """Final logged metrics whose names start with one of ``prefixes``."""
    return {k: to_float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefixes)}


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write JSON through a temp file + rename, so a reader never sees half a file."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(dict(data), indent=2, sort_keys=True) + "\n"))


def print_summary(metrics: Mapping[str, float], title: str) -> None:
    """A table of the final metrics (entry points only)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in sorted(metrics):
        value = metrics[name]
        table.add_row(name, f"{value:.4f}" if not math.isnan(value) else "nan")
    Console().print(table)
