"""What a W&B run gets after testing, as a Lightning callback: sample recommendations, per-user rows, the best model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from recsys_attn.evaluation.outputs import per_user_frame
from recsys_attn.models.base import RecModule
from recsys_attn.serving.recommend import recommend

log = logging.getLogger(__name__)


class WandbReport(L.Callback):
    """After ``trainer.test``, adds to every W&B logger of the trainer (other loggers are left alone):

    - ``recommendations/sample``: a table of the top-K items (original ids, K = the largest ``eval_ks``) of the
      first ``sample_users`` test users (0 = none);
    - ``per_user/test``: the test pass's per-user rows (``per_user.parquet``'s columns; the first
      ``per_user_rows`` users) and ``per_user/test/rank``, a histogram of every user's target rank;
    - with ``log_best_checkpoint``, the checkpoint that was tested as a ``model`` artifact.

    Intervals, beyond-accuracy metrics and segments are logged metrics already, so they reach every logger.
    """

    def __init__(self, sample_users: int = 20, log_best_checkpoint: bool = False, per_user_rows: int = 10_000) -> None:
        self.sample_users = sample_users
        self.log_best_checkpoint = log_best_checkpoint
        self.per_user_rows = per_user_rows

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers or not trainer.is_global_zero or not isinstance(pl_module, RecModule):
            return
        datamodule: Any = getattr(trainer, "datamodule", None)
        for lg in wandb_loggers:
            if self.sample_users > 0:
                _log_sample_recommendations(lg, pl_module, datamodule, self.sample_users)
            if "test" in pl_module.per_user and self.per_user_rows > 0:
                _log_per_user(lg, pl_module, datamodule, self.per_user_rows)
            if self.log_best_checkpoint:
                _log_checkpoint(lg.experiment, str(getattr(trainer, "ckpt_path", None) or ""))


def _log_sample_recommendations(lg: WandbLogger, model: RecModule, datamodule: Any, n_users: int) -> None:
    """A ``wandb.Table`` of the top-K test recommendations of the first ``n_users`` users."""
    k = max(model.settings.eval_ks)
    recs = recommend(model, datamodule, k=k, max_users=n_users).select("user_id", "rank", "item_id", "score")
    lg.log_table("recommendations/sample", columns=recs.columns, data=[list(row) for row in recs.iter_rows()])
    log.info("logged top-%d recommendations of %d users to W&B", k, recs["user_id"].n_unique())


def _log_per_user(lg: WandbLogger, model: RecModule, datamodule: Any, n_rows: int) -> None:
    """The test pass's per-user rows as a table (the first ``n_rows``) and the histogram of all target ranks."""
    import wandb

    frame = per_user_frame(model.per_user["test"], "test", model.settings.eval_ks, datamodule.prepared)
    head = frame.head(n_rows)
    lg.log_table("per_user/test", columns=head.columns, data=[list(row) for row in head.iter_rows()])
    lg.experiment.log({"per_user/test/rank": wandb.Histogram(frame["rank"].to_list())})
    log.info("logged per-user rows of %d of %d test users to W&B", head.height, frame.height)


def _log_checkpoint(run: Any, ckpt: str) -> None:
    """The tested checkpoint as a W&B ``model`` artifact (aliases ``best`` and ``latest``)."""
    import wandb

    path = Path(ckpt) if ckpt else None
    if path is None or not path.is_file():
        log.warning("logger.wandb.log_best_checkpoint: no best checkpoint to log (got %r)", ckpt)
        return
    artifact = wandb.Artifact(name=f"model-{run.id}", type="model", metadata={"checkpoint": path.name})
    # immutable: the checkpoint is not copied into W&B's staging area outside the run directory
    artifact.add_file(str(path), name=path.name, policy="immutable")
    run.log_artifact(artifact, aliases=["best", "latest"])
    log.info("logged %s to W&B as artifact %s", path, artifact.name)
