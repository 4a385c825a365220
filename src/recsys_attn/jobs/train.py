"""Train a recommender: ``python -m recsys_attn.train [model=bert4rec] [key=value ...]``."""

from __future__ import annotations

import logging
import time

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.errors import ConfigError, RunStopped
from recsys_attn.evaluation.outputs import write_evaluation
from recsys_attn.models.base import RecModule
from recsys_attn.models.guards import NonFiniteLossGuard
from recsys_attn.run.checkpoints import check_resume
from recsys_attn.run.monitors import check_monitors
from recsys_attn.run.noise import silence_third_party_noise
from recsys_attn.run.run_dir import failed_run_cleanup, resume_command
from recsys_attn.run.runner import (
    check_model_keys,
    check_trainer,
    collect_metrics,
    instantiate_group,
    output_dir,
    print_summary,
    stage_prefixes,
    start_run,
    write_json_atomic,
)
from recsys_attn.tracking.callbacks import EpochTimer, StopCheckpoint
from recsys_attn.tracking.loggers import build_loggers, finish_wandb, report_callbacks
from recsys_attn.tracking.progress import EpochBar, EpochProgress, format_duration

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``."""
    silence_third_party_noise()  # called from Python (a notebook) as well as from the command line
    check_model_keys(cfg.model)
    check_trains(cfg)
    start_run(cfg)
    datamodule: SeqDataModule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    # the features go in after Hydra (which would turn their dataclasses into dicts)
    build = hydra.utils.instantiate(cfg.model, _partial_=True, _convert_="all")
    model: RecModule = build(
        n_items=datamodule.n_items, item_popularity=datamodule.item_popularity, item_features=datamodule.item_features
    )
    check_resume(cfg, model, datamodule)  # a resumed checkpoint must fit this model and data: one line if not
    check_monitors(cfg, model)  # a callback monitoring a metric nobody logs fails here, not after training
    timer = EpochTimer()
    progress = EpochProgress(cfg.get("optimized_metric") or "val/ndcg@10")
    stop = StopCheckpoint()
    callbacks = [*instantiate_group(cfg.get("callbacks")), timer, NonFiniteLossGuard(), progress, stop]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(EpochBar())
    callbacks += report_callbacks(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=build_loggers(cfg) or False)
    check_trainer(trainer)
    for lg in trainer.loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except SystemExit as exc:  # Lightning ends a fit stopped by SIGTERM or Ctrl-C with SystemExit (status 0, 1)
        if stop.signal is None:
            raise
        raise stopped(stop, trainer) from exc
    fit_s = time.perf_counter() - start
    best = str(getattr(trainer.checkpoint_callback, "best_model_path", "") or "")
    if best:  # val/* and test/* of metrics.json both describe the selected (best) checkpoint
        trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    metrics = collect_metrics(trainer, stage_prefixes("val"))
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        metrics.update(collect_metrics(trainer, stage_prefixes("test")))
    metrics.update(
        {
            "time/fit_s": fit_s,
            "time/epoch_s_median": timer.median,
            "time/val_s_median": timer.val_median,
            "train/epochs": float(trainer.current_epoch),
        }
    )

    if trainer.is_global_zero:
        finish_wandb(trainer.loggers)
        if cfg.get("test"):  # metrics.json and per_user.parquet appear together or not at all
            ks = model.settings.eval_ks
            write_evaluation(output_dir(cfg), metrics, model.per_user, ["test"], ks, datamodule.prepared)
        else:
            write_json_atomic(output_dir(cfg) / "metrics.json", metrics)
        epochs = int(metrics["train/epochs"])
        chosen = f", best checkpoint: epoch {progress.best_epoch}" if best and progress.best_epoch else ""
        title = (
            f"{type(model).__name__} on {cfg.data.source.name}: {epochs} epoch{'' if epochs == 1 else 's'}{chosen}"
            f" · fit {format_duration(fit_s)} ({format_duration(timer.median)} a training epoch)"
        )
        print_summary(metrics, title, model.settings.eval_ks)
        print(f"run -> {output_dir(cfg)} (all {len(metrics)} values in metrics.json; checkpoints/)")
    return metrics


def check_trains(cfg: DictConfig) -> None:
    """Refuse a run that would train nothing and test an untrained model as if it were trained."""
    for key in ("trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches"):
        if OmegaConf.select(cfg, key) == 0:
            raise ConfigError(
                f"{key}: 0 trains nothing, and the run would report an untrained model's metrics; set it >= 1 "
                "(score a checkpoint with python -m recsys_attn.evaluate ckpt_path=...)"
            )


def stopped(stop: StopCheckpoint, trainer: L.Trainer) -> RunStopped:
    """The one-line report of a fit stopped from outside: where it stopped, what to resume from and how."""
    code = 143 if stop.signal == "SIGTERM" else 130  # 128 + the signal's number, as a shell reports it
    where = f"in epoch {trainer.current_epoch + 1} (step {trainer.global_step})"
    if stop.saved is None:
        return RunStopped(f"{stop.signal} {where}, before any checkpoint; nothing to resume", code)
    return RunStopped(f"{stop.signal} {where}; saved {stop.saved}; resume with: {resume_command(stop.saved)}", code)


def run(cfg: DictConfig) -> float | None:
    """The command's run under Hydra; returns ``optimized_metric`` for sweepers."""
    with failed_run_cleanup():
        metrics = train(cfg)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
