"""Base LightningModule: evaluation under the full-ranking protocol for every recommender."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.data.batches import EvalBatch
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.item_features import ItemFeatures
from recsys_attn.data.samples import SampleSpec
from recsys_attn.errors import TrainingError
from recsys_attn.evaluation.beyond import BeyondAccuracy
from recsys_attn.evaluation.cold import COLD_FIELDS, cold_items_of, cold_ranks, cold_statistics
from recsys_attn.evaluation.metrics import _RankMetric, ranking_metrics, sampled_ranks, target_ranks
from recsys_attn.evaluation.per_user import PerUserRows
from recsys_attn.evaluation.summary import stage_statistics
from recsys_attn.models.settings import EvalSettings
from recsys_attn.settings import build_settings

log = logging.getLogger(__name__)


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

    uses_features: ClassVar[bool] = False
    """Whether the model embeds item side information (``item_features``); the others rank without it."""

    def __init__(
        self,
        n_items: int,
        item_popularity: Tensor | None = None,
        item_features: ItemFeatures | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["item_popularity", "item_features"])
        if item_features is not None and not self.uses_features:
            log.info(
                "%s ranks without the item features (features=... applies to the sequence models)", type(self).__name__
            )
        self.settings = build_settings(self.settings_class, settings, "model")
        self.n_items = n_items
        pop = torch.zeros(n_items + 1) if item_popularity is None else item_popularity.float()
        self.register_buffer("item_popularity", pop)  # [n_items + 1], saved with the checkpoint
        self.eval_metrics = torch.nn.ModuleDict({stage: self._metrics(stage) for stage in ("val", "test")})
        self.per_user: dict[str, dict[str, Tensor]] = {}
        """The last pass's rows of each stage, one per user across all devices (``evaluation.per_user``)."""

    @property
    def sample_spec(self) -> SampleSpec:
        """The samples this model learns from and reads (next-item by default); the datamodule builds them."""
        return SampleSpec("next", self.settings.max_len)

    CLASS_KEY: ClassVar[str] = "recsys_attn_class"
    """Checkpoint entry naming the module's class, so ``evaluate`` can rebuild it without Hydra."""
    DATA_KEY: ClassVar[str] = "recsys_attn_data"
    """Checkpoint entry holding the training data's ``DataIdentity`` (source, preparation, item id map hash), so
    the commands that load the checkpoint refuse data whose item ids mean other items."""
    SAME_SHAPE_ARCHITECTURE: ClassVar[frozenset[str]] = frozenset(
        {
            "num_heads",
            "norm_first",
            "block_layout",
            "positions",
            "activation",
            "feature_fusion",
            "feature_sides",
            "similarity",
        }
    )
    """Settings that change what the weights compute but not their shapes: a resume may not change them
    (a shape change is refused anyway; ``lr``, ``dropout``, the loss, ... may change)."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"
        datamodule = getattr(self.trainer, "datamodule", None)
        if isinstance(datamodule, SeqDataModule) and datamodule.prepared is not None:
            checkpoint[self.DATA_KEY] = datamodule.data_identity.to_dict()

    def _metrics(self, stage: str) -> torch.nn.ModuleDict:
        ks = self.settings.eval_ks
        groups: dict[str, Any] = {
            "full": ranking_metrics(ks, f"{stage}/"),
            "users": UserCount(),
            "rows": PerUserRows(),
            "cold": PerUserRows(COLD_FIELDS),
            "beyond": BeyondAccuracy(ks, self.n_items),
        }
        if self.settings.sampled_eval is not None:
            n = self.settings.sampled_negatives
            groups["sampled"] = ranking_metrics(ks, f"{stage}/", suffix=f"_s{n}")
        return torch.nn.ModuleDict(groups)

    def score(self, items: Tensor, times: Tensor | None = None) -> Tensor:
        """Scores ``[B, n_items + 1]`` of every item (column 0 = padding) after each sequence ``[B, L]``.

        ``times`` ``[B, L]``: each input's timestamp, for a model whose ``sample_spec`` reads them (others ignore it).
        """
        raise NotImplementedError

    def scores_of(self, items: Tensor, times: Tensor | None) -> Tensor:
        """``score`` of inputs ``[B, L]``, handing ``times`` over only when the batch has them (so an override of
        ``score(items)`` written before timestamps keeps working)."""
        return self.score(items) if times is None else self.score(items, times)  # [B, V]

    def _evaluate(self, batch: EvalBatch, stage: str) -> None:
        scores = self.scores_of(batch.input, batch.times)  # [B, V]
        filt = (batch.seen_rows, batch.seen_items) if self.settings.filter_seen else (None, None)
        ranks = target_ranks(scores, batch.target, filt[0], filt[1], n_items=self.n_items)  # [B]
        metrics: Any = self.eval_metrics[stage]
        metrics["full"].update(ranks)
        metrics["users"].update(ranks)
        history_len = torch.bincount(batch.seen_rows, minlength=ranks.numel())  # [B]
        metrics["rows"].update(batch.users, history_len, batch.target, ranks)
        metrics["beyond"].update(self._top_items(scores, batch), batch.target, self.item_popularity)
        if self._cold_items is None:  # once a pass (one wait for the device)
            self._cold_items = self._pass_cold_items()
        if isinstance(self._cold_items, Tensor):
            is_cold, c_ranks, c_count = cold_ranks(scores, batch.target, filt[0], filt[1], self._cold_items)  # [B] x 3
            metrics["cold"].update(batch.users, is_cold, c_ranks, c_count)
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

    _cold_items: Tensor | bool | None = None
    """The pass's cold items ``[n_items + 1]`` (``evaluation.cold``), False when none is ranked, None before it."""

    cold_evaluation: bool | None = None
    """Whether a pass ranks the targets no training sequence holds among such items (``{stage}_cold/*``): None =
    when the datamodule's split holds items out (``data.split.cold_items``); a plain split leaves a few items
    untrained (seen only as held-out targets), too few users to report."""

    def _pass_cold_items(self) -> Tensor | bool:
        """The untrained items ``[n_items + 1]`` when this pass ranks cold targets, else False."""
        on = self.cold_evaluation
        if on is None:
            datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
            on = isinstance(datamodule, SeqDataModule) and datamodule.split.cold_items > 0
        cold = cold_items_of(self.item_popularity)  # [n_items + 1]
        return cold if on and bool(cold.any()) and not bool(cold[1:].all()) else False  # all: no counts

    def _finish_evaluation(self, stage: str) -> None:
        """Log the pass's metrics once, from every device's users; intervals and segments from per-user rows.

        The metrics are computed here, not handed to ``self.log`` at each step: each ``self.log`` call costs
        Lightning ~1 ms on the host, ten a step made a GPU validation step host-bound (benchmarks/RESULTS.md).
        """
        metrics: Any = self.eval_metrics[stage]
        rows, beyond = metrics["rows"].compute(), metrics["beyond"].compute()  # every device's, on every device
        cold_rows = metrics["cold"].compute() if metrics["cold"].update_count else {"is_cold": torch.zeros(0)}
        self._cold_items = None
        ranked = {**metrics["full"].compute(), f"{stage}/users": metrics["users"].compute()}
        if "sampled" in metrics:
            ranked.update(metrics["sampled"].compute())
        for group in metrics.values():
            group.reset()
        self.per_user[stage] = {name: t.cpu() for name, t in rows.items()}
        s = self.settings
        logged = {name: float(v) for name, v in ranked.items()}
        logged.update({f"{stage}/{name}": float(v) for name, v in beyond.items()})
        pop = self.item_popularity.cpu()
        edges, shares = s.history_edges, s.popularity_shares
        logged.update(stage_statistics(rows, stage, s.eval_ks, pop, s.bootstrap, s.bootstrap_seed, edges, shares))
        logged.update(cold_statistics(cold_rows, stage, s.eval_ks, s.bootstrap, s.bootstrap_seed))
        # the same values on every device: no sync. Only the ranking metrics go through self.log (callbacks
        # monitor them, trainer.validate/test return them); the rest, ~100 values a pass, would cost Lightning
        # ~0.9 ms each there, more than the pass itself at small sizes (benchmarks/bench_overhead.py)
        self.log_dict({name: logged.pop(name) for name in ranked}, on_step=False, on_epoch=True)
        self._publish(logged)
        if not getattr(self, "_ild_noted", False):
            log.info(
                "intra-list diversity is not computed (it needs an item similarity); coverage, gini, ARP, novelty are"
            )
            self._ild_noted = True

    def _publish(self, values: dict[str, float]) -> None:
        """Hand ``values`` to the callbacks (``trainer.callback_metrics``, hence metrics.json) and the loggers, as
        ``self.log`` at an epoch's end would, without its per-value bookkeeping."""
        trainer = self._trainer
        if trainer is None or not values:
            return
        trainer.callback_metrics.update({name: torch.tensor(v) for name, v in values.items()})
        if not trainer.sanity_checking:
            trainer._logger_connector.log_metrics(values)  # type: ignore[arg-type]  # rank zero's loggers only

    def _top_items(self, scores: Tensor, batch: EvalBatch) -> Tensor:
        """The best ``max(eval_ks)`` items ``[B, K]`` of the evaluation ranking, PAD where none is left."""
        ranked = self._rankable(scores, batch)  # [B, n_items + 1]
        top = ranked.topk(min(max(self.settings.eval_ks), self.n_items), dim=1)  # [B, K]
        return torch.where(top.values > float("-inf"), top.indices, PAD)  # [B, K]

    def _rankable(self, scores: Tensor, batch: EvalBatch) -> Tensor:
        """A float copy of ``scores`` with padding, MASK (and the history when ``filter_seen``) removed: ``-inf``."""
        # A copy: score() may return a view of a buffer (Popularity), which must not be written to.
        ranked = scores[:, : self.n_items + 1].float().clone()  # [B, n_items + 1]
        ranked[:, PAD] = float("-inf")
        if self.settings.filter_seen:
            ranked[batch.seen_rows, batch.seen_items] = float("-inf")
        return ranked

    def validation_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def rankable_scores(self, batch: EvalBatch, scores: Tensor | None = None) -> Tensor:
        """Scores ``[B, n_items + 1]`` of every item after each history; ``-inf`` where it may not be served.

        Padding, MASK (and the user's history when ``filter_seen``) score ``-inf``. ``scores`` ``[B, >= n_items + 1]``
        stand in for the model's own (a popularity fallback for users without a known item).
        """
        raw = self.scores_of(batch.input, batch.times) if scores is None else scores  # [B, V]
        ranked = self._rankable(raw, batch)  # [B, n_items + 1]
        if bool(ranked.isnan().any()):
            raise TrainingError("the model scores items as NaN (diverged weights); retrain with a lower model.lr")
        return ranked

    def serving_scores(self, batch: EvalBatch) -> tuple[Tensor, Tensor]:
        """``rankable_scores`` of a batch to serve, and ``[B]`` bool: the user has no history item the model knows.

        Such a user (a new user whose items the model never saw) is scored by the training popularity instead.
        """
        n = batch.users.numel()
        fallback = torch.bincount(batch.seen_rows, minlength=n) == 0  # [B]
        if not bool(fallback.any()):
            return self.rankable_scores(batch), fallback
        scores = self.item_popularity[None, :].expand(n, -1).clone()  # [B, n_items + 1]
        known = ~fallback  # [B]
        if bool(known.any()):
            times = None if batch.times is None else batch.times[known]  # [B', L]
            scores[known] = self.scores_of(batch.input[known], times)[:, : self.n_items + 1].float()  # [B', V]
        return self.rankable_scores(batch, scores), fallback

    def top_k(self, batch: EvalBatch, k: int) -> tuple[Tensor, Tensor]:
        """Item indices and scores ``[B, k]`` of the best items after each history, best first.

        Padding (and the user's history when ``filter_seen``) scores ``-inf``; a user with fewer than
        ``k`` rankable items gets ``-inf`` in the trailing columns.
        """
        top = self.rankable_scores(batch).topk(min(k, self.n_items + 1), dim=1)  # [B, k]
        return top.indices, top.values

    def predict_step(self, batch: EvalBatch, batch_idx: int) -> dict[str, Tensor]:
        """Top-K items per user (history filtered), K = the largest eval cut-off."""
        items, scores = self.top_k(batch, max(self.settings.eval_ks))
        return {"users": batch.users, "items": items, "scores": scores}
