"""Callbacks monitoring a validation metric the run never logs are refused before training, naming the setting."""

from __future__ import annotations

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from recsys_attn.errors import ConfigError
from recsys_attn.models.base import RecModule
from recsys_attn.run.entry import CONF_DIR
from recsys_attn.run.monitors import check_monitors

RANKING = "val/hr@1, val/hr@5, val/hr@10, val/hr@20, val/mrr, val/ndcg@1, val/ndcg@5, val/ndcg@10, val/ndcg@20"
WITHOUT = "or train without the callbacks that monitor it (callbacks=none)"


def train_config(*overrides: str) -> tuple[DictConfig, RecModule]:
    """``conf/train.yaml`` with ``overrides``, and its model over 10 items."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    model = hydra.utils.instantiate(cfg.model, n_items=10, item_popularity=torch.zeros(11), _convert_="all")
    return cfg, model


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("model=bert4rec",),
        ("callbacks=none", "trainer.limit_val_batches=0"),  # nothing monitored
        ("optimized_metric=val/coverage@10",),  # not a ranking metric: not checked here
        ("model.sampled_eval=uniform", "optimized_metric=val/hr@10_s100"),
        ("model.eval_ks=[3]", "optimized_metric=val/ndcg@3"),
        ("trainer.check_val_every_n_epoch=5", "trainer.max_epochs=5"),
        ("optimized_metric=train/loss_epoch",),  # not a validation metric
    ],
)
def test_metrics_the_run_logs_pass(overrides: tuple[str, ...]) -> None:
    check_monitors(*train_config(*overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("trainer.limit_val_batches=0",),
            "optimized_metric=val/ndcg@10: trainer.limit_val_batches=0 runs no validation, so val/ndcg@10 is never "
            f"logged; let validation run, {WITHOUT}",
        ),
        (
            ("trainer.limit_val_batches=0.0", "callbacks.early_stopping.monitor=val/hr@10"),
            "optimized_metric=val/ndcg@10: trainer.limit_val_batches=0.0 runs no validation",
        ),
        (
            ("callbacks.model_checkpoint.monitor=val/hr@10", "trainer.limit_val_batches=0"),
            "callbacks.model_checkpoint.monitor=val/hr@10: trainer.limit_val_batches=0 runs no validation",
        ),
        (
            ("trainer.check_val_every_n_epoch=5", "trainer.max_epochs=3"),
            "optimized_metric=val/ndcg@10: trainer.check_val_every_n_epoch=5 is past trainer.max_epochs=3: validation "
            f"never runs, so val/ndcg@10 is never logged; set trainer.check_val_every_n_epoch <= 3, {WITHOUT}",
        ),
        (
            ("optimized_metric=val/ndcg@11",),
            "optimized_metric=val/ndcg@11: the model logs no val/ndcg@11 (model.eval_ks=[1, 5, 10, 20], "
            f"model.sampled_eval=None); its ranking metrics are {RANKING}",
        ),
        (
            ("callbacks.early_stopping.monitor=val/hr@10_s100",),
            "callbacks.early_stopping.monitor=val/hr@10_s100: the model logs no val/hr@10_s100",
        ),
        (
            ("model.sampled_eval=uniform", "model.sampled_negatives=50", "optimized_metric=val/mrr_s100"),
            "optimized_metric=val/mrr_s100: the model logs no val/mrr_s100 (model.eval_ks=[1, 5, 10, 20], "
            "model.sampled_eval=uniform); its ranking metrics are val/hr@1, val/hr@1_s50, val/hr@5, val/hr@5_s50,",
        ),
    ],
)
def test_a_metric_the_run_never_logs_is_refused(overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_monitors(*train_config(*overrides))
    assert str(err.value).startswith(message), str(err.value)
