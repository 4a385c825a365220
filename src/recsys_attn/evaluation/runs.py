"""Finished runs read back for comparison: metrics, per-user rows, settings and evaluation protocol."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, ListConfig, OmegaConf

from recsys_attn.errors import ConfigError
from recsys_attn.evaluation.outputs import KEY_COLUMNS, METRICS_FILE, PER_USER_FILE, with_metric_values

log = logging.getLogger(__name__)

CONFIG_FILE = ".hydra/config.yaml"
OVERRIDES_FILE = ".hydra/overrides.yaml"

HYDRA_FILE = ".hydra/hydra.yaml"
NOISE_OVERRIDES = ("hydra.", "paths.", "trainer.accelerator", "ckpt_path")
"""Overrides that say where a run ran, not what it is: neither in labels nor in the ``overrides`` column."""


def natural_key(job: str) -> list[Any]:
    """Sort ``2`` before ``10`` (Hydra numbers jobs 0, 1, ..., 10)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", job) if part]


def read_metrics(path: Path) -> dict[str, float]:
    """Numeric entries of a ``metrics.json`` (others are skipped with a warning)."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    metrics: dict[str, float] = {}
    for name, value in data.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[name] = float(value)
        else:
            log.warning("%s: skipping non-numeric metric %s=%r", path, name, value)
    return metrics


@dataclass(frozen=True)
class RunSettings:
    """What a run was configured with, read back from its ``.hydra`` folder (empty where it has none)."""

    config: DictConfig | None = None
    overrides: list[str] = field(default_factory=list)
    """``key=value`` as given on the command line, in order, without ``NOISE_OVERRIDES``."""
    choices: dict[str, Any] = field(default_factory=dict)
    """Config group -> the option chosen (``model: sasrec``, ``experiment: None``)."""

    def value(self, key: str) -> str | None:
        """The run's value of ``key`` as text: a group's option, a setting, else its override; None if absent."""
        if key in self.choices:
            return None if self.choices[key] is None else str(self.choices[key])
        node = _select(self.config, key)
        if isinstance(node, DictConfig | ListConfig):
            if key == "model" and "_target_" in node:  # no group record (a run saved by hand): its class
                return str(node._target_).rsplit(".", 1)[-1].lower()
            node = None
        if node is not None:
            return _text(node)
        given = dict(split_override(o) for o in self.overrides)
        return given.get(key)


def read_settings(path: Path) -> RunSettings:
    """The settings saved in ``path/.hydra`` (any of the three files may be missing)."""
    config, overrides, hydra = (_load(path / name) for name in (CONFIG_FILE, OVERRIDES_FILE, HYDRA_FILE))
    if overrides is not None and not isinstance(overrides, ListConfig):
        raise ConfigError(f"{path / OVERRIDES_FILE}: expected a list of overrides, got {type(overrides).__name__}")
    choices = OmegaConf.select(hydra, "hydra.runtime.choices", default=None) if hydra is not None else None
    return RunSettings(
        config if isinstance(config, DictConfig) else None,
        [str(o) for o in overrides or [] if not str(o).lstrip("+~").startswith(NOISE_OVERRIDES)],
        {str(k): v for k, v in choices.items() if "/" not in str(k)} if isinstance(choices, DictConfig) else {},
    )


def _load(path: Path) -> DictConfig | ListConfig | None:
    """The YAML file at ``path``, or None where there is none."""
    if not path.is_file():
        return None
    try:
        return OmegaConf.load(path)
    except Exception as exc:  # a damaged file: name it, not a YAML parser's traceback
        raise ConfigError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def split_override(override: str) -> tuple[str, str | None]:
    """``key=value`` (also ``+key=value``, ``~key``) as the key and the value (None for a deletion)."""
    key, sep, value = override.lstrip("+~").partition("=")
    return key, value if sep and not override.startswith("~") else None


def _select(config: DictConfig | None, key: str) -> Any:
    """``config``'s node at ``key``; None where it has none or it cannot be resolved here."""
    if config is None:
        return None
    return OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)


def _text(value: Any) -> str:
    """A setting as a command line writes it: ``true``, ``0.002``, ``64``."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


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
        jobs = sorted({p.parent for p in path.glob(f"*/{PER_USER_FILE}")}, key=lambda p: natural_key(p.name))
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


def _cut_offs(path: Path, metrics: dict[str, float], split: str) -> list[int]:
    """The metrics' cut-offs of a run whose per-user rows hold ranks only: ``model.eval_ks`` of its saved config (the
    order the evaluation wrote its columns in), else those its ``metrics.json`` names for ``split``, ascending."""
    config = OmegaConf.load(path / CONFIG_FILE) if (path / CONFIG_FILE).is_file() else None
    saved = _select(config if isinstance(config, DictConfig) else None, "model.eval_ks")
    if isinstance(saved, ListConfig) and len(saved) > 0:
        return [int(k) for k in saved]
    ks = sorted({int(m.group(1)) for key in metrics if (m := re.fullmatch(rf"{re.escape(split)}/hr@(\d+)", key))})
    if not ks:
        raise ConfigError(
            f"{path / PER_USER_FILE} holds ranks only, and neither {path / CONFIG_FILE} (model.eval_ks) nor "
            f"{path / METRICS_FILE} ({split}/hr@K) names the cut-offs to derive the metrics at"
        )
    return ks


def load_run(path: Path, split: str, name: str | None = None) -> Run:
    """Read the run at ``path``; its per-user rows of ``split`` (a slim copy's metric columns derived from ranks)."""
    rows = pl.read_parquet(path / PER_USER_FILE).filter(pl.col("split") == split)
    if rows.height == 0:
        raise ConfigError(f"split: {path / PER_USER_FILE} has no rows of split {split!r}")
    metrics_path = path / METRICS_FILE
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else {}
    if tuple(rows.columns) == KEY_COLUMNS:  # a kept copy: ranks only
        rows = with_metric_values(rows, _cut_offs(path, metrics, split))
    overrides = " ".join(read_settings(path).overrides)
    return Run(name or path.name, path, overrides, metrics, rows.sort("user_id"), run_protocol(path))
