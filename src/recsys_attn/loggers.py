"""Experiment loggers from the ``logger`` config group, with W&B's offline fallback."""

from __future__ import annotations

import logging
import os
from typing import Any

import hydra
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, open_dict

from recsys_attn.config import ConfigError

log = logging.getLogger(__name__)


def wandb_can_go_online() -> bool:
    """True when W&B has credentials (env or netrc) and offline mode is not forced."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return False
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.isfile(netrc) and "api.wandb.ai" in open(netrc).read()


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Every logger of ``cfg.logger``; W&B falls back to offline mode when not logged in."""
    group = cfg.get("logger") or {}
    loggers: list[Logger] = []
    for name, node in group.items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        if node._target_.endswith("WandbLogger") and not node.get("offline") and not wandb_can_go_online():
            log.warning(
                "W&B is not logged in (no WANDB_API_KEY or ~/.netrc entry): logging offline to %s; "
                "sync later with `wandb sync %s/wandb/offline-run-*`",
                node.save_dir,
                node.save_dir,
            )
            with open_dict(node):
                node.offline = True
        lg: Any = hydra.utils.instantiate(node)
        if not isinstance(lg, Logger):
            raise ConfigError(f"logger.{name}: {type(lg).__name__} is not a Lightning logger")
        loggers.append(lg)
    return loggers


def finish_run(loggers: list[Logger], model: Any, datamodule: Any, cfg: DictConfig, best_ckpt: str) -> None:
    """After testing: extras for loggers that support them (W&B tables and artifacts)."""
