"""Base LightningModule: evaluation under the full-ranking protocol for every recommender."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor

from recsys_attn.config import build_settings
from recsys_attn.data.batches import EvalBatch
from recsys_attn.data.samples import SampleSpec
from recsys_attn.errors import TrainingError
from recsys_attn.metrics import _RankMetric, ranking_metrics, sampled_ranks, target_ranks
from recsys_attn.models.settings import EvalSettings


def fp32_scores(users: Tensor, items: Tensor) -> Tensor:
    """Scores ``[B, V]`` of user states ``[B, D]`` against item vectors ``[V, D]``, always in fp32.

    Autocast is off for this product: bf16 scores (8 mantissa bits) tie many items with the target,
    and ties count against the model, so a bf16-mixed run would be scored lower than its weights deserve.
    """
    with torch.autocast(device_type=users.device.type, enabled=False):
        return users.float() @ items.float().T  # [B, V]


class UserCount(_RankMetric):
    """Number of evaluated users (summed over devices)."""

    def value(self, ranks: Tensor) -> Tensor:
        return torch.ones_like(ranks, dtype=torch.float64)

    def compute(self) -> Tensor:
        return self.count.float()


class RecModule(L.LightningModule):
    """Scores every item for each evaluation user and logs ``val/*`` and ``test/*`` metrics.

    Subclasses implement ``score(input) -> [B, n_items + 1]`` and say which samples they need
    (``sample_spec``). Settings are validated into ``settings_class``; all constructor arguments are
    scalars, so ``load_from_checkpoint`` needs no Hydra.
    """

    settings_class: ClassVar[type[EvalSettings]] = EvalSettings
    item_popularity: Tensor

    def __init__(self, n_items: int, item_popularity: Tensor | None = None, **settings: Any) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["item_popularity"])
        self.settings = build_settings(self.settings_class, settings, "model")
        self.n_items = n_items
        pop = torch.zeros(n_items + 1) if item_popularity is None else item_popularity.float()
        self.register_buffer("item_popularity", pop)  # [n_items + 1], saved with the checkpoint
        self.eval_metrics = torch.nn.ModuleDict({stage: self._metrics(stage) for stage in ("val", "test")})

    @property
    def sample_spec(self) -> SampleSpec:
        """The samples this model learns from and reads (next-item by default); the datamodule builds them."""
        return SampleSpec("next", self.settings.max_len)

    CLASS_KEY: ClassVar[str] = "recsys_attn_class"
    """Checkpoint entry naming the module's class, so ``evaluate`` can rebuild it without Hydra."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"

    def _metrics(self, stage: str) -> torch.nn.ModuleDict:
        ks = self.settings.eval_ks
        groups: dict[str, Any] = {"full": ranking_metrics(ks, f"{stage}/"), "users": UserCount()}
        if self.settings.sampled_eval is not None:
            n = self.settings.sampled_negatives
            groups["sampled"] = ranking_metrics(ks, f"{stage}/", suffix=f"_s{n}")
        return torch.nn.ModuleDict(groups)

    def score(self, items: Tensor) -> Tensor:
        """Scores ``[B, n_items + 1]`` of every item (column 0 = padding) after each sequence ``[B, L]``."""
        raise NotImplementedError

    def _evaluate(self, batch: EvalBatch, stage: str) -> None:
        scores = self.score(batch.input)  # [B, V]
        filt = (batch.seen_rows, batch.seen_items) if self.settings.filter_seen else (None, None)
        ranks = target_ranks(scores, batch.target, filt[0], filt[1], n_items=self.n_items)  # [B]
        metrics: Any = self.eval_metrics[stage]
        metrics["full"].update(ranks)
        metrics["users"].update(ranks)
        self.log_dict(metrics["full"], on_step=False, on_epoch=True)
        self.log(f"{stage}/users", metrics["users"], on_step=False, on_epoch=True)
        if "sampled" in metrics:
            pop = self.item_popularity if self.settings.sampled_eval == "popularity" else None
            s_ranks = sampled_ranks(
                scores,
                batch.target,
                torch.cat([batch.seen_rows, batch.later_rows]),  # negatives: items never interacted with
                torch.cat([batch.seen_items, batch.later_items]),
                self.settings.sampled_negatives,
                pop,
                self.n_items,
            )  # [B]
            metrics["sampled"].update(s_ranks)
            self.log_dict(metrics["sampled"], on_step=False, on_epoch=True)

    def validation_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def top_k(self, batch: EvalBatch, k: int) -> tuple[Tensor, Tensor]:
        """Item indices and scores ``[B, k]`` of the best items after each history, best first.

        Padding (and the user's history when ``filter_seen``) scores ``-inf``; a user with fewer than
        ``k`` rankable items gets ``-inf`` in the trailing columns.
        """
        # A copy: score() may return a view of a buffer (Popularity), which must not be written to.
        scores = self.score(batch.input)[:, : self.n_items + 1].float().clone()  # [B, n_items + 1]
        if bool(scores.isnan().any()):
            raise TrainingError("the model scores items as NaN (diverged weights); retrain with a lower model.lr")
        scores[:, 0] = float("-inf")
        if self.settings.filter_seen:
            scores[batch.seen_rows, batch.seen_items] = float("-inf")
        top = scores.topk(min(k, self.n_items + 1), dim=1)  # [B, k]
        return top.indices, top.values

    def predict_step(self, batch: EvalBatch, batch_idx: int) -> dict[str, Tensor]:
        """Top-K items per user (history filtered), K = the largest eval cut-off."""
        items, scores = self.top_k(batch, max(self.settings.eval_ks))
        return {"users": batch.users, "items": items, "scores": scores}
