"""Score a checkpoint: ``python -m recsys_attn.evaluate ckpt_path=<file> [eval.*=...]``."""

from __future__ import annotations

import logging

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recsys_attn.errors import ConfigError
from recsys_attn.evaluation.outputs import write_evaluation
from recsys_attn.run.checkpoints import checkpoint_and_data
from recsys_attn.run.noise import silence_third_party_noise
from recsys_attn.run.run_dir import failed_run_cleanup, use_trained_data
from recsys_attn.run.runner import (
    check_setting,
    check_trainer,
    collect_metrics,
    output_dir,
    print_summary,
    stage_prefixes,
    start_run,
)

log = logging.getLogger(__name__)

SPLITS = ("val", "test")
"""The sets ``evaluate`` can score (``splits=[val, test]``)."""


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Val/test metrics of ``cfg.ckpt_path`` on ``cfg.data``; writes ``metrics.json`` (rank 0)."""
    silence_third_party_noise()  # called from Python (a notebook) as well as from the command line
    check_setting(cfg, "splits", list[str])
    if not cfg.splits or not set(cfg.splits) <= set(SPLITS):
        raise ConfigError(f"splits: expected a non-empty list of {', '.join(SPLITS)} (got {list(cfg.splits)!r})")
    start_run(cfg, ckpt_required=True)
    model, datamodule = checkpoint_and_data(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    check_trainer(trainer)
    metrics: dict[str, float] = {}
    if "val" in cfg.splits:
        trainer.validate(model, datamodule=datamodule, verbose=False)
        metrics.update(collect_metrics(trainer, stage_prefixes("val")))
    if "test" in cfg.splits:
        trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update(collect_metrics(trainer, stage_prefixes("test")))
    if trainer.is_global_zero:
        ks, prepared = model.settings.eval_ks, datamodule.prepared
        path, _ = write_evaluation(output_dir(cfg), metrics, model.per_user, cfg.splits, ks, prepared)  # together
        print_summary(metrics, f"{type(model).__name__} checkpoint {cfg.ckpt_path}", model.settings.eval_ks)
        print(f"metrics -> {path}")
    return metrics


def run(cfg: DictConfig) -> None:
    """Under Hydra: the data of the checkpoint's own run unless ``data=...`` is given."""
    with failed_run_cleanup():
        use_trained_data(cfg, HydraConfig.get().overrides.task)
        evaluate(cfg)
