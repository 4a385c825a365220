"""Pieces the entry points share: instantiating groups, seeding, output files and summaries."""

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
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from recsys_attn.atomic import write_atomic
from recsys_attn.config import MAX_SEED, ConfigError, build_settings, check_type
from recsys_attn.hardware import warn_if_bf16_is_emulated

log = logging.getLogger(__name__)

MATMUL_PRECISIONS = ("highest", "high", "medium")
CKPT_EXAMPLE = "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"
LIGHTNING_CKPT_KEYWORDS = ("last", "hpc")
"""``Trainer.fit(ckpt_path=...)`` values that name no file: the newest checkpoint of the run, the HPC one."""


def output_dir(cfg: DictConfig) -> Path:
    """The run directory: Hydra's when running under Hydra, else ``paths.output_dir``."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def start_run(cfg: DictConfig, ckpt_required: bool = False) -> None:
    """Check the top-level settings, seed every generator from ``cfg.seed``, set the float32 matmul precision.

    Args:
        cfg: The entry point's whole config; ``seed``, ``ckpt_path`` and ``trainer.max_epochs`` are checked
            here, before anything runs, and fail with one line naming the key.
        ckpt_required: ``ckpt_path`` must name a checkpoint (evaluate, predict) rather than be null (train).
    """
    check_setting(cfg, "seed", int, minimum=0)
    if cfg.seed > MAX_SEED:
        raise ConfigError(f"seed: must be in [0, {MAX_SEED}] (got {cfg.seed!r})")
    if "trainer" in cfg:  # Lightning: -1 trains without an epoch limit
        check_setting(cfg, "trainer.max_epochs", int | None, minimum=-1)
    check_ckpt_path(cfg, ckpt_required)
    precision = cfg.get("float32_matmul_precision") or "highest"
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"float32_matmul_precision: {precision!r} is not one of {', '.join(MATMUL_PRECISIONS)}")
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(precision)


def check_setting(cfg: DictConfig, key: str, annotation: Any, minimum: int | None = None) -> None:
    """Fail with one line naming ``key`` (dotted) when its value does not fit ``annotation`` or is below ``minimum``."""
    value = OmegaConf.select(cfg, key)
    check_type(key, value, annotation)
    if minimum is not None and value is not None and value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum} (got {value!r})")


def check_ckpt_path(cfg: DictConfig, required: bool) -> None:
    """``ckpt_path`` is a readable checkpoint file, or null where not ``required``."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or (required and cfg.get("ckpt_path") in (None, "")):
        raise ConfigError(f"ckpt_path: required, e.g. {CKPT_EXAMPLE}")
    value = cfg.get("ckpt_path")
    if value is None:
        return
    check_type("ckpt_path", value, str)
    if not value:
        raise ConfigError(f"ckpt_path: expected a checkpoint file or null (got {value!r})")
    if not required and (value in LIGHTNING_CKPT_KEYWORDS or "://" in value):
        return  # resuming: Lightning resolves its keywords and remote URLs itself
    read_checkpoint(value)


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """The Lightning checkpoint saved at ``ckpt_path`` (tensors memory-mapped, so reading it is cheap).

    Raises:
        ConfigError: naming ``ckpt_path`` when it is missing, a directory, unreadable or not a checkpoint.
    """
    path = Path(ckpt_path)
    if path.is_dir():
        raise ConfigError(f"ckpt_path: expected a checkpoint file, not a directory (got {str(ckpt_path)!r})")
    if not path.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint at {path.resolve()} (got {str(ckpt_path)!r})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # truncated file, another format: say which file, not a pickle traceback
        raise ConfigError(f"ckpt_path: cannot read {path} as a checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict):
        raise ConfigError(f"ckpt_path: {path} holds a {type(ckpt).__name__}, not a Lightning checkpoint")
    if "state_dict" not in ckpt:
        raise ConfigError(f"ckpt_path: {path} holds a dict without 'state_dict', not a Lightning checkpoint")
    return ckpt


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Objects of every ``_target_`` node in a group such as ``callbacks`` or ``logger``."""
    if not cfg:
        return []
    return [
        hydra.utils.instantiate(node) for node in cfg.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def check_model_keys(model_cfg: DictConfig) -> None:
    """Fail before any data work when ``model.*`` holds a key the model class does not know, or a wrong value."""
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


def device_of(name: str) -> torch.device:
    """``auto`` = the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: {name!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} but no GPU is available (use device=cpu or device=auto)")
    return device


def check_trainer(trainer: L.Trainer) -> None:
    """Warn about a trainer set-up that runs but is slow on this machine: bf16 on a CPU that emulates it."""
    on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
    warn_if_bf16_is_emulated(str(trainer.precision), on_cpu)
