"""Experiment loggers from the ``logger`` config group, with W&B's offline fallback."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

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


#: Keys of a ``WandbLogger`` node that configure :func:`finish_run`, not the logger itself.
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


def finish_run(loggers: list[Logger], model: Any, datamodule: Any, cfg: DictConfig, best_ckpt: str) -> None:
    """After testing: W&B extras (config, sample recommendations, best checkpoint), then finish the W&B run.

    Each ``WandbLogger`` gets the resolved config (when nothing logged one yet), a table
    ``recommendations/sample`` of the top-K items for the first ``logger.wandb.sample_users`` test users
    (original ids, K = the largest ``model.eval_ks``) and, with ``logger.wandb.log_best_checkpoint=true``, the
    best checkpoint as a ``model`` artifact. The run is finished even when one of these fails, and its files are
    flushed before this returns, so an offline run directory is complete and syncable. Other loggers are left
    as they are.
    """
    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers:
        return
    import wandb

    options = wandb_run_options(cfg)
    try:
        for lg in wandb_loggers:
            run = lg.experiment
            try:
                if not any(not str(key).startswith("_") for key in run.config.as_dict()):
                    run.config.update(OmegaConf.to_container(cfg, resolve=True), allow_val_change=True)
                if options["sample_users"] > 0:
                    _log_sample_recommendations(lg, model, datamodule, options["sample_users"])
                if options["log_best_checkpoint"]:
                    _log_checkpoint(run, best_ckpt)
            finally:
                offline, sync_dir = bool(run.offline), run.sync_dir
                run.finish()
            if offline:
                log.info("W&B offline run saved to %s; upload it with `wandb sync %s`", sync_dir, sync_dir)
    finally:
        # run.finish() returns before wandb-core has flushed and closed the run's .wandb file; teardown waits
        # for that. Skipped while another run of this process is still active (teardown would finish it).
        if wandb.run is None:
            wandb.teardown()


def _log_sample_recommendations(lg: WandbLogger, model: Any, datamodule: Any, n_users: int) -> None:
    """A ``wandb.Table`` of the top-K test recommendations of the first ``n_users`` users."""
    from recsys_attn.recommend import recommend  # keeps this module light for the entry points

    k = max(model.settings.eval_ks)
    recs = recommend(model, datamodule, k=k, max_users=n_users).select("user_id", "rank", "item_id", "score")
    lg.log_table("recommendations/sample", columns=recs.columns, data=[list(row) for row in recs.iter_rows()])
    log.info("logged top-%d recommendations of %d users to W&B", k, recs["user_id"].n_unique())


def _log_checkpoint(run: Any, best_ckpt: str) -> None:
    """The best checkpoint as a W&B ``model`` artifact (aliases ``best`` and ``latest``)."""
    import wandb

    path = Path(best_ckpt) if best_ckpt else None
    if path is None or not path.is_file():
        log.warning("logger.wandb.log_best_checkpoint: no best checkpoint to log (got %r)", best_ckpt)
        return
    artifact = wandb.Artifact(name=f"model-{run.id}", type="model", metadata={"checkpoint": path.name})
    # immutable: the checkpoint is not copied into W&B's staging area outside the run directory
    artifact.add_file(str(path), name=path.name, policy="immutable")
    run.log_artifact(artifact, aliases=["best", "latest"])
    log.info("logged %s to W&B as artifact %s", path, artifact.name)
