"""Experiment loggers from the ``logger`` config group, with W&B's offline fallback."""

from __future__ import annotations

import logging
import os
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from recsys_attn.errors import ConfigError
from recsys_attn.tracking.wandb_report import WandbReport

log = logging.getLogger(__name__)


def wandb_can_go_online() -> bool:
    """True when W&B has credentials (env or netrc) and offline mode is not forced."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return False
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.isfile(netrc) and "api.wandb.ai" in open(netrc).read()


#: Keys of a ``WandbLogger`` node that configure the end-of-run report (``WandbReport``), not the logger itself.
WANDB_RUN_KEYS: dict[str, Any] = {"sample_users": 20, "log_best_checkpoint": False}


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Every logger of ``cfg.logger``; W&B falls back to offline mode when not logged in."""
    group = cfg.get("logger") or {}
    loggers: list[Logger] = []
    for name, node in group.items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        extra: tuple[str, ...] = ()
        if _is_wandb(node):
            extra = tuple(WANDB_RUN_KEYS)
            if not node.get("offline") and not wandb_can_go_online():
                mode = os.environ.get("WANDB_MODE", "")
                reason = f"WANDB_MODE={mode}" if mode else "W&B is not logged in (no WANDB_API_KEY or ~/.netrc entry)"
                log.warning(
                    "%s: logging offline to %s; sync later with `wandb sync %s/wandb/offline-run-*`",
                    reason,
                    node.save_dir,
                    node.save_dir,
                )
                with open_dict(node):
                    node.offline = True
        # Resolved while still attached to the root (interpolations such as ${paths.output_dir}).
        resolved: dict[str, Any] = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
        lg: Any = hydra.utils.instantiate({k: v for k, v in resolved.items() if k not in extra})
        if not isinstance(lg, Logger):
            raise ConfigError(f"logger.{name}: {type(lg).__name__} is not a Lightning logger")
        loggers.append(lg)
    return loggers


def _is_wandb(node: DictConfig) -> bool:
    return str(node.get("_target_", "")).endswith("WandbLogger")


def wandb_run_options(cfg: DictConfig) -> dict[str, Any]:
    """``sample_users`` and ``log_best_checkpoint`` of the first W&B node of ``cfg.logger`` (else defaults)."""
    group = cfg.get("logger") or {}
    node = next((n for n in group.values() if isinstance(n, DictConfig) and _is_wandb(n)), None)
    options = dict(WANDB_RUN_KEYS)
    if node is not None:
        options.update({k: node[k] for k in WANDB_RUN_KEYS if node.get(k) is not None})
    if isinstance(options["sample_users"], bool) or not isinstance(options["sample_users"], int):
        raise ConfigError(f"logger.wandb.sample_users: expected an integer >= 0, got {options['sample_users']!r}")
    if options["sample_users"] < 0:
        raise ConfigError(f"logger.wandb.sample_users: expected an integer >= 0, got {options['sample_users']}")
    if not isinstance(options["log_best_checkpoint"], bool):
        raise ConfigError(
            f"logger.wandb.log_best_checkpoint: expected true or false, got {options['log_best_checkpoint']!r}"
        )
    return options


def report_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The end-of-run W&B report (:class:`WandbReport`) when ``cfg.logger`` has W&B."""
    group = cfg.get("logger") or {}
    if not any(isinstance(n, DictConfig) and _is_wandb(n) for n in group.values()):
        return []
    return [WandbReport(**wandb_run_options(cfg))]


def finish_wandb(loggers: list[Logger]) -> None:
    """Finish every W&B run of ``loggers`` and flush its files, so an offline run directory is complete and syncable.

    Each run is finished even when another fails to; other loggers are left as they are.
    """
    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers:
        return
    import wandb

    try:
        for lg in wandb_loggers:
            run = lg.experiment
            offline, sync_dir = bool(run.offline), run.sync_dir
            run.finish()
            if offline:
                log.info("W&B offline run saved to %s; upload it with `wandb sync %s`", sync_dir, sync_dir)
    finally:
        # run.finish() returns before wandb-core has flushed and closed the run's .wandb file; teardown waits
        # for that. Skipped while another run of this process is still active (teardown would finish it).
        if wandb.run is None:
            wandb.teardown()
