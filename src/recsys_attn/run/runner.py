"""Pieces the entry points share: instantiating groups, seeding, output files and summaries."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recsys_attn.atomic import write_atomic
from recsys_attn.errors import ConfigError
from recsys_attn.evaluation.headline import headline_lines
from recsys_attn.run.hardware import warn_if_bf16_is_emulated
from recsys_attn.settings import MAX_SEED, build_settings, check_type

log = logging.getLogger(__name__)

MATMUL_PRECISIONS = ("highest", "high", "medium")
CKPT_EXAMPLE = "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"
LIGHTNING_CKPT_KEYWORDS = ("last", "hpc")
"""``Trainer.fit(ckpt_path=...)`` values that name no file: the newest checkpoint of the run, the HPC one."""
LAST_CKPT = re.compile(r"^last(-(\d+))?")
"""Names Lightning's ``ckpt_path="last"`` takes for a last checkpoint (``last.ckpt``, ``last-v1.ckpt``)."""
RESUME_FREE_KEYS = ("ckpt_path", "trainer.max_epochs", "trainer.max_steps", "trainer.max_time")
"""Settings a resumed run may change and still be the same configuration (``ckpt_path=last`` looks for one)."""


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
    if not required and value == "last":
        check_last(cfg)
        return
    if not required and (value in LIGHTNING_CKPT_KEYWORDS or "://" in value):
        return  # resuming: Lightning resolves its other keyword and remote URLs itself
    read_checkpoint(value)


def checkpoint_folder(cfg: DictConfig) -> Path:
    """Where this run writes checkpoints: ``callbacks.model_checkpoint.dirpath``, else ``<run>/checkpoints``."""
    dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
    return Path(dirpath) if dirpath else output_dir(cfg) / "checkpoints"


def last_checkpoint(folder: Path) -> Path | None:
    """The newest last checkpoint in ``folder``, the file Lightning's ``ckpt_path="last"`` resumes; None if none."""
    if not folder.is_dir():
        return None
    found = [p for p in folder.iterdir() if p.suffix == ".ckpt" and LAST_CKPT.match(p.stem) and p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def resume_path(cfg: DictConfig) -> Path | None:
    """The checkpoint file ``train`` resumes from, ``last`` resolved; None for a new run, ``hpc`` or a URL."""
    value = cfg.get("ckpt_path")
    if not isinstance(value, str) or not value or value == "hpc" or "://" in value:
        return None
    return last_checkpoint(checkpoint_folder(cfg)) if value == "last" else Path(value)


def check_last(cfg: DictConfig) -> None:
    """``ckpt_path=last`` resumes this run directory's last checkpoint; in a new run directory there is none.

    Lightning would train from scratch; this fails in one line saying how to resume, naming the last checkpoint
    of the latest run of the same configuration beside this one when there is one.
    """
    folder = checkpoint_folder(cfg)
    last = last_checkpoint(folder)
    if last is not None:
        log.info("ckpt_path=last: resuming from %s", last)
        return
    run = output_dir(cfg)
    same = latest_run_like(cfg, run.parent, exclude=run)
    found = (
        f"; the latest run of this configuration is {same.parents[1]}: ckpt_path={same}"
        if same is not None
        else f" (no run of this configuration in {run.parent} has one)"
    )
    raise ConfigError(
        f"ckpt_path: 'last' resumes the last checkpoint of this run's directory, and {folder} has none (every run "
        f"gets a new directory); resume a run with hydra.run.dir=<run> ckpt_path=last, or pass "
        f"ckpt_path=<run>/checkpoints/last.ckpt{found}"
    )


def latest_run_like(cfg: DictConfig, runs: Path, exclude: Path | None = None) -> Path | None:
    """The newest ``<run>/checkpoints/last*.ckpt`` under ``runs`` whose run saved the same configuration as ``cfg``.

    The configurations are compared as Hydra saved them (``<run>/.hydra/config.yaml``, interpolations
    unresolved), without ``RESUME_FREE_KEYS``.
    """
    if not runs.is_dir():
        return None
    lasts = [last_checkpoint(d / "checkpoints") for d in runs.iterdir() if d.is_dir() and d != exclude]
    wanted = _comparable(cfg)
    for last in sorted((p for p in lasts if p is not None), key=lambda p: p.stat().st_mtime_ns, reverse=True):
        saved = last.parents[1] / ".hydra" / "config.yaml"
        try:
            if saved.is_file() and _comparable(OmegaConf.load(saved)) == wanted:
                return last
        except (OSError, yaml.YAMLError, OmegaConfBaseException):  # unreadable: not a run of this configuration
            continue
    return None


def _comparable(cfg: Any) -> Any:
    """``cfg`` as plain containers, interpolations unresolved, ``RESUME_FREE_KEYS`` left out."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    if not isinstance(plain, dict):
        return plain
    for key in RESUME_FREE_KEYS:
        *parents, leaf = key.split(".")
        node: Any = plain
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return plain


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


def stage_prefixes(stage: str) -> tuple[str, ...]:
    """The prefixes of everything an evaluation ``stage`` (``val``, ``test``) logs: metrics, segments, cold targets."""
    return (f"{stage}/", f"segments/{stage}/", f"{stage}_cold/")


def collect_metrics(trainer: L.Trainer, prefixes: tuple[str, ...] = ("val/", "test/")) -> dict[str, float]:
    """Final logged metrics whose names start with one of ``prefixes``."""
    return {k: to_float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefixes)}


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write JSON through a temp file + rename, so a reader never sees half a file."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(dict(data), indent=2, sort_keys=True) + "\n"))


def print_summary(metrics: Mapping[str, float], title: str, ks: Sequence[int]) -> None:
    """The end of a command on the console (entry points only): ``title``, then the headline metrics at the
    cut-offs ``ks`` with their 95% intervals; every value stays in ``metrics.json``."""
    print("\n".join([title, *headline_lines(metrics, ks)]))


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
