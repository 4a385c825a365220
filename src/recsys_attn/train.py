"""Train a recommender: ``python -m recsys_attn.train [model=bert4rec] [key=value ...]``."""

from __future__ import annotations

import logging
import time

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from recsys_attn.callbacks import EpochTimer, NonFiniteLossGuard
from recsys_attn.config import CONF_DIR, run_entry_point  # importing config registers the resolvers
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.evaluation.outputs import write_per_user
from recsys_attn.loggers import build_loggers, finish_wandb, report_callbacks
from recsys_attn.models.base import RecModule
from recsys_attn.progress import EpochProgress
from recsys_attn.run_dir import failed_run_cleanup
from recsys_attn.runner import (
    check_model_keys,
    check_trainer,
    collect_metrics,
    instantiate_group,
    output_dir,
    print_summary,
    start_run,
    write_json_atomic,
)

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``."""
    check_model_keys(cfg.model)
    start_run(cfg)
    datamodule: SeqDataModule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    model: RecModule = hydra.utils.instantiate(
        cfg.model,
        n_items=datamodule.n_items,
        item_popularity=datamodule.item_popularity,
        _convert_="all",
    )
    timer = EpochTimer()
    progress = EpochProgress(cfg.get("optimized_metric") or "val/ndcg@10")
    callbacks = [*instantiate_group(cfg.get("callbacks")), timer, NonFiniteLossGuard(), progress]
    callbacks += report_callbacks(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=build_loggers(cfg) or False)
    check_trainer(trainer)
    for lg in trainer.loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_s = time.perf_counter() - start
    best = str(getattr(trainer.checkpoint_callback, "best_model_path", "") or "")
    if best:  # val/* and test/* of metrics.json both describe the selected (best) checkpoint
        trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    metrics = collect_metrics(trainer, ("val/", "segments/val/"))
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(collect_metrics(trainer, ("test/", "segments/test/")))
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
        write_json_atomic(output_dir(cfg) / "metrics.json", metrics)
        if cfg.get("test"):
            write_per_user(output_dir(cfg), model.per_user, ["test"], model.settings.eval_ks, datamodule.prepared)
        print_summary(metrics, f"{cfg.model._target_.rsplit('.', 1)[-1]} on {cfg.data.source.name}")
        print(f"run -> {output_dir(cfg)} (checkpoints/, metrics.json; evaluate or predict with ckpt_path=...)")
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``optimized_metric`` for sweepers."""
    with failed_run_cleanup():
        metrics = train(cfg)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


def main() -> None:
    """Console script and ``python -m`` entry: user errors exit with one line naming the key."""
    run_entry_point(hydra_main)


if __name__ == "__main__":
    main()
