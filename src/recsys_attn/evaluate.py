"""Score a checkpoint: ``python -m recsys_attn.evaluate ckpt_path=<file> [eval.*=...]``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from recsys_attn.config import (
    CONF_DIR,  # importing config registers the resolvers
    ConfigError,
    run_entry_point,
)
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.errors import TrainingError
from recsys_attn.evaluation.outputs import write_per_user
from recsys_attn.models.base import RecModule
from recsys_attn.run_dir import failed_run_cleanup, use_trained_data
from recsys_attn.runner import (
    check_setting,
    collect_metrics,
    print_summary,
    read_checkpoint,
    start_run,
    write_json_atomic,
)
from recsys_attn.train import output_dir

log = logging.getLogger(__name__)

SPLITS = ("val", "test")
"""The sets ``evaluate`` can score (``splits=[val, test]``)."""


def load_module(ckpt_path: str | Path, **overrides: Any) -> RecModule:
    """Rebuild the recommender saved in ``ckpt_path`` (its class is recorded in the checkpoint)."""
    path = Path(ckpt_path)
    ckpt = read_checkpoint(path)
    target = ckpt.get(RecModule.CLASS_KEY)
    if target is None:
        raise ConfigError(f"ckpt_path: {path} was not written by recsys_attn (no {RecModule.CLASS_KEY!r} entry)")
    cls: type[RecModule] = hydra.utils.get_class(target)
    module = cls.load_from_checkpoint(path, map_location="cpu", **overrides)
    bad = [name for name, t in module.state_dict().items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if bad:
        raise TrainingError(
            f"ckpt_path: {path} holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}): the training diverged; "
            "retrain with a lower model.lr"
        )
    return module


def checkpoint_and_data(cfg: DictConfig) -> tuple[RecModule, SeqDataModule]:
    """The model of ``cfg.ckpt_path`` (with ``cfg.eval`` overrides) and ``cfg.data`` set up as it was trained."""
    eval_cfg: dict[str, Any] = OmegaConf.to_container(cfg.eval)  # type: ignore[assignment]
    overrides = {k: v for k, v in eval_cfg.items() if v is not None}
    model = load_module(cfg.ckpt_path, **overrides)
    datamodule: SeqDataModule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("test")
    datamodule.connect(model.sample_spec)  # the data must be cut and sampled the way the model was trained
    if datamodule.n_items != model.n_items:
        raise ConfigError(
            f"data: {cfg.data.source.name} has {datamodule.n_items} items but the checkpoint was trained on "
            f"{model.n_items}; pass the data config it was trained with (data=...)"
        )
    return model, datamodule


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Val/test metrics of ``cfg.ckpt_path`` on ``cfg.data``; writes ``metrics.json`` (rank 0)."""
    check_setting(cfg, "splits", list[str])
    if not cfg.splits or not set(cfg.splits) <= set(SPLITS):
        raise ConfigError(f"splits: expected a non-empty list of {', '.join(SPLITS)} (got {list(cfg.splits)!r})")
    start_run(cfg, ckpt_required=True)
    model, datamodule = checkpoint_and_data(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    metrics: dict[str, float] = {}
    if "val" in cfg.splits:
        trainer.validate(model, datamodule=datamodule)
        metrics.update(collect_metrics(trainer, ("val/", "segments/val/")))
    if "test" in cfg.splits:
        trainer.test(model, datamodule=datamodule)
        metrics.update(collect_metrics(trainer, ("test/", "segments/test/")))
    if trainer.is_global_zero:
        path = output_dir(cfg) / "metrics.json"
        write_json_atomic(path, metrics)
        write_per_user(output_dir(cfg), model.per_user, cfg.splits, model.settings.eval_ks, datamodule.prepared)
        print_summary(metrics, f"{type(model).__name__} checkpoint {Path(cfg.ckpt_path).name}")
        print(f"metrics -> {path}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point: the data of the checkpoint's own run unless ``data=...`` is given."""
    with failed_run_cleanup():
        use_trained_data(cfg, HydraConfig.get().overrides.task)
        evaluate(cfg)


def main() -> None:
    """Console script and ``python -m`` entry: user errors exit with one line naming the key."""
    run_entry_point(hydra_main)


if __name__ == "__main__":
    main()
