"""Sequence recommenders: a pluggable encoder of item ids, the configured loss over its states, AdamW.

A model is declared by the encoder it builds (``build_encoder``) and the samples it learns from
(``sample_spec``); losses, negatives, scoring, metrics and the optimiser live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol, cast

import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn

from recsys_attn.constants import PAD
from recsys_attn.data.batches import TrainBatch, TrainBatches
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.history import HistoryIndex
from recsys_attn.data.item_features import ItemFeatures
from recsys_attn.data.samples import SampleSpec
from recsys_attn.errors import ConfigError
from recsys_attn.models.base import RecModule, fp32_scores
from recsys_attn.models.item_embedding import FeatureEmbedding, ItemEmbedding, feature_layers
from recsys_attn.models.losses import LossContext, get_loss, masked_cross_entropy
from recsys_attn.models.optimiser import adamw, fused_adam_applies, lr_schedule
from recsys_attn.models.optimiser_step import lean_step, lean_step_applies
from recsys_attn.models.settings import SequentialSettings


class ItemEncoder(Protocol):
    """What a sequence recommender is given: an ``nn.Module`` from item ids to hidden states."""

    def __call__(self, items: Tensor) -> Tensor:
        """Hidden states ``[B, L, D]`` for left-padded item ids ``[B, L]`` (zero at padding)."""
        ...

    def item_weights(self, n_items: int) -> Tensor:
        """The items' output vectors ``[n_items + 1, D]`` (row 0 = padding) the states are scored against."""
        ...


class TimedItemEncoder(ItemEncoder, Protocol):
    """The encoder of a model whose ``sample_spec`` reads timestamps: it is given each input's time too."""

    def __call__(self, items: Tensor, *, times: Tensor | None = None) -> Tensor:
        """Hidden states ``[B, L, D]`` for left-padded item ids and their timestamps ``[B, L]``."""
        ...


class SequentialRec(RecModule):
    """Shared training loop: hidden states at positions with a target feed the configured loss."""

    settings_class: ClassVar[type[SequentialSettings]] = SequentialSettings
    settings: SequentialSettings

    uses_features: ClassVar[bool] = True
    FEATURES_KEY: ClassVar[str] = "recsys_attn_features"
    """Checkpoint entry holding the features' vocabularies (what each categorical code means)."""

    def __init__(
        self,
        n_items: int,
        item_popularity: Tensor | None = None,
        item_features: ItemFeatures | None = None,
        feature_spec: dict[str, dict[str, Any]] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(n_items, item_popularity, **settings)
        self.loss_fn = get_loss(self.settings.loss)
        self._item_features = item_features
        self.feature_spec = item_features.spec() if item_features is not None else feature_spec
        self.hparams["feature_spec"] = self.feature_spec  # a checkpoint rebuilds the feature layers from it
        self.feature_vocab: dict[str, list[str]] = item_features.vocab() if item_features is not None else {}
        self._reads_times = self.sample_spec.times  # fixed by the settings; read once, not at every step
        encoder = self.build_encoder(self.sample_spec.n_tokens(n_items))
        self._item_features = None  # their values live in the encoder's buffers now
        if not isinstance(encoder, nn.Module):  # its parameters must register with the module
            raise TypeError(f"{type(self).__name__}.build_encoder must return an nn.Module, got {type(encoder)}")
        self.encoder = encoder
        for table in encoder.modules():  # model.item_dropout reaches every encoder's item table from here
            if isinstance(table, ItemEmbedding):
                table.table_dropout = self.settings.item_dropout

    def build_encoder(self, n_tokens: int) -> ItemEncoder:
        """The encoder (an ``nn.Module``) for token ids ``0..n_tokens - 1``, built from ``self.settings``.

        Its item table is a ``models.item_embedding.ItemEmbedding`` given ``self.feature_layers(n_tokens)``: that
        is all a model does to use item side information.
        """
        raise NotImplementedError

    def feature_layers(self, n_tokens: int) -> FeatureEmbedding | None:
        """The item-feature layers of an encoder over ``n_tokens`` tokens (None: the run has no features)."""
        s = self.settings
        return feature_layers(
            self._item_features,
            self.feature_spec,
            n_tokens,
            self.n_items,
            s.hidden_size,
            s.feature_fusion,
            self.item_popularity,
            s.feature_id_dropout,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.feature_vocab:
            checkpoint[self.FEATURES_KEY] = self.feature_vocab

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.feature_vocab = checkpoint.get(self.FEATURES_KEY, {})

    @property
    def sample_spec(self) -> SampleSpec:
        """Next-item samples; with ``model.static_shapes`` batches of one shape."""
        return SampleSpec("next", self.settings.max_len, static=self.settings.static_shapes)

    history: HistoryIndex | None = None
    """Training items per sequence, attached from the datamodule at fit (negatives avoid them)."""

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        samples = self.settings.loss != "ce"  # every other loss draws negatives (ce's softmax has no use for them)
        if stage == "fit" and self.settings.negatives_exclude_history and samples and dm is not None:
            self.history = dm.store.history
        static = self.settings.static_shapes  # its whole loss is compiled instead, on a GPU (``_static_loss``)
        if stage == "fit" and self.settings.compile and not static and not self._compiled:  # evaluate/predict: eager
            self.encoder.compile(dynamic=True)  # in place: parameter names (checkpoints) stay as they are
            self._compiled = True

    _compiled = False

    def on_train_start(self) -> None:
        self._lean_step = lean_step_applies(self.trainer)

    _lean_step = False
    """Whether a manual step skips Lightning's step hooks (``optimiser_step.lean_step_applies``), set each fit."""

    def forward(self, items: Tensor, times: Tensor | None = None) -> Tensor:
        return self.states(items, times)  # [B, L, D]

    def states(self, items: Tensor, times: Tensor | None = None) -> Tensor:
        """Hidden states ``[B, L, D]``; ``times`` ``[B, L]`` reach an encoder that reads them (``sample_spec.times``).

        The one call of the encoder: training, evaluation and serving all go through it.
        """
        if not self._reads_times:
            return self.encoder(items)  # [B, L, D]
        if times is None:
            raise ValueError(
                f"{type(self).__name__} reads each input's timestamp (model.time_buckets="
                f"{getattr(self.settings, 'time_buckets', '?')}): pass times [B, L] with the items"
            )
        return cast(TimedItemEncoder, self.encoder)(items, times=times)  # [B, L, D]

    def score(self, items: Tensor, times: Tensor | None = None) -> Tensor:
        last = self.states(items, times)[:, -1]  # [B, D] state after the history (cloze: at MASK)
        users, table = self.similarity_inputs(last, self.encoder.item_weights(self.n_items))  # [B, D], [V, D]
        return fp32_scores(users, table)  # [B, n_items + 1] fp32 under autocast

    def similarity_inputs(self, states: Tensor, table: Tensor) -> tuple[Tensor, Tensor]:
        """States ``[N, D]`` and item vectors ``[V, D]`` whose dot products are the scores (``model.similarity``).

        ``cosine``: both L2-normalised and the states divided by the temperature (the one place it is applied:
        every loss and every score goes through here).
        """
        if self.settings.similarity == "dot":
            return states, table
        return F.normalize(states, dim=-1) / self.settings.temperature, F.normalize(table, dim=-1)  # [N, D], [V, D]

    @property
    def automatic_optimization(self) -> bool:
        """False (this module steps its optimiser itself) unless the trainer clips or accumulates gradients.

        Lightning's automatic optimisation wraps every step in a closure and a round of hooks: ~0.8 ms a step on
        2 CPU cores, a third of a small model's whole step (``benchmarks/bench_overhead.py``). Clipping and
        accumulation (``trainer.gradient_clip_val``, ``trainer.accumulate_grad_batches``) keep Lightning's loop.
        """
        trainer = self._trainer
        if trainer is None:
            return True
        return bool(trainer.gradient_clip_val) or trainer.accumulate_grad_batches != 1

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        raise AttributeError("SequentialRec decides automatic_optimization from its trainer's settings")

    def training_step(self, batch: TrainBatch | TrainBatches, batch_idx: int) -> Tensor:
        if not isinstance(batch, TrainBatches):
            return self._train_on(batch, log=self._logs_call())
        if self.automatic_optimization:
            raise ConfigError(
                f"data.steps_per_call={len(batch.batches)} takes several optimiser steps a call, which Lightning's "
                "automatic optimisation cannot: drop trainer.gradient_clip_val and trainer.accumulate_grad_batches, "
                "or set data.steps_per_call=1"
            )
        if self.trainer.world_size > 1:  # DDP syncs gradients in the backward of its wrapper's one forward a call
            raise ConfigError(
                f"data.steps_per_call={len(batch.batches)} takes several optimiser steps in one forward call of the "
                f"model, which DDP cannot synchronise ({self.trainer.world_size} processes): set data.steps_per_call=1"
            )
        taken = len(batch.batches)
        if self.trainer.max_steps != -1:  # it counts optimiser steps: the rest of a call past it is not taken
            taken = max(min(taken, self.trainer.max_steps - self.global_step), 1)
        logs = self._logs_call()
        total: Tensor | None = None
        for i, part in enumerate(batch.batches[:taken]):  # one optimiser step each, in order
            loss = self._train_on(part, log=logs and i == taken - 1).detach()  # [] the last taken logs its loss
            # summed as each step ends: a loss replayed from a CUDA graph (model.static_shapes) is overwritten by the
            # next step's replay, so it is never kept past its step
            total = loss if total is None else total + loss
        assert total is not None  # taken >= 1
        return total / taken  # [] what the call's callbacks see (NaN if any step's loss was)

    def _train_on(self, batch: TrainBatch, log: bool) -> Tensor:
        """One optimiser step on ``batch`` (``log``: its loss goes to the loggers); its loss."""
        loss = self._step_loss(batch, log)
        if self.automatic_optimization:
            return loss
        optimizer = cast(LightningOptimizer, self.optimizers())
        if self._lean_step:
            lean_step(optimizer, loss)
        else:
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]
        return loss

    def _logs_call(self) -> bool:
        """Whether the loggers record this call of the training step: Lightning's own rule (every
        ``log_every_n_steps`` calls, which with ``data.steps_per_call > 1`` hold several optimiser steps each); no
        trainer: every call."""
        connector = getattr(self._trainer, "_logger_connector", None)
        return bool(connector.should_update_logs) if connector is not None else True

    def _step_loss(self, batch: TrainBatch, log: bool = False) -> Tensor:
        """The training loss of ``batch`` (the step's own part: optimisation is ``_train_on``'s)."""
        positions: int | Tensor  # static: a device count, no host sync; else nonzero's size, on the host
        with own_random_state(batch.rng_seed, self.device):  # dropout and negatives replay on resume
            if self.settings.static_shapes:
                loss, positions = self._static(batch)  # [], []
            else:
                loss, positions = self._selected_loss(batch)  # [], int
        self._track_loss(loss.detach(), positions, log)
        if batch.expected_targets:  # length-grouped batches: weigh each position as a random batch would
            return loss * (torch.as_tensor(positions) / batch.expected_targets)  # [] float32, as the mask's sum gave
        return loss

    def _selected_loss(self, batch: TrainBatch) -> tuple[Tensor, int]:
        """The configured loss over the positions with a target, and their number (the step's one host sync)."""
        hidden = self.states(batch.input, batch.times)  # [B, L, D]
        # flat positions with a target, row-major as a boolean mask selects them: the step's one wait
        # for the device (each boolean selection would be one)
        at = (batch.target != PAD).flatten().nonzero().squeeze(1)  # [N]
        states, table = self.similarity_inputs(hidden.flatten(0, 1)[at], self.encoder.item_weights(self.n_items))
        loss = self.loss_fn(
            states,  # [N, D]
            batch.target.flatten()[at],  # [N]
            table,  # [V, D]
            self._loss_context(batch, at),
        )
        return loss, at.numel()

    def _static(self, batch: TrainBatch) -> tuple[Tensor, Tensor]:
        """The loss of ``model.static_shapes``: one shape, a masked loss, no wait for the device.

        On a GPU ``_masked_loss`` is compiled with ``mode="reduce-overhead"`` at the first step: its forward and
        backward are captured as CUDA graphs and replayed (one launch each instead of hundreds).
        """
        if self._static_loss is None:
            gpu = batch.input.device.type == "cuda"
            self._static_loss = torch.compile(self._masked_loss, mode="reduce-overhead") if gpu else self._masked_loss
        return self._static_loss(batch.input, batch.target, batch.times)  # [], []

    _static_loss: Any = None
    """``_masked_loss``, compiled on a GPU; set at the first static step."""

    def _masked_loss(self, items: Tensor, target: Tensor, times: Tensor | None) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over the positions with a target of ``[B, L]`` batches, and their number ``[]``."""
        hidden = self.states(items, times).flatten(0, 1)  # [B L, D]
        states, table = self.similarity_inputs(hidden, self.encoder.item_weights(self.n_items))  # [B L, D], [V, D]
        targets = target.flatten()  # [B L] PAD = no loss
        return masked_cross_entropy(states, targets, table), (targets != PAD).sum()

    _loss_sum: Tensor | None = None  # [] the epoch's loss summed over its positions, on the device
    _loss_positions: int | Tensor = 0  # loss positions of the epoch so far (host: nonzero's size; static: device)

    def _track_loss(self, loss: Tensor, positions: int | Tensor, log: bool) -> None:
        """Keep the epoch's loss on the device; log ``train/loss_step`` only on the steps the loggers record (``log``).

        ``self.log`` costs Lightning ~1.5 ms a call (it moves its record of the metric to the device each
        time; measured on 2 CPU cores), most of a small model's step on a GPU, and ``batch_size=int(...)``
        would wait for the device: so one call per ``trainer.log_every_n_steps`` steps, and the epoch mean
        (weighted by loss positions) logged once as ``train/loss_epoch`` at the epoch's end.
        """
        total = loss * positions  # []
        self._loss_sum = total if self._loss_sum is None else self._loss_sum + total
        self._loss_positions += positions
        if log:
            self.log("train/loss_step", loss, prog_bar=True, on_step=True, on_epoch=False)

    def on_train_epoch_end(self) -> None:
        if self._loss_sum is not None:
            mean = self._loss_sum / torch.as_tensor(self._loss_positions).clamp_min(1)  # []
            self.log("train/loss_epoch", mean, on_step=False, on_epoch=True)
        self._loss_sum, self._loss_positions = None, 0

    def _loss_context(self, batch: TrainBatch, at: Tensor) -> LossContext:
        """What the loss needs besides states and targets, for the flat target positions ``at`` ``[N]``."""
        s = self.settings
        history, seq = None, None
        if self.history is not None and batch.seq is not None:
            self.history = history = self.history.to(at.device)  # moved once, kept on the training device
            seq = batch.seq[at // batch.target.shape[1]]  # [N] training sequence of each position
        return LossContext(
            self.n_items,
            s.num_negatives,
            s.negative_sampling,
            self.item_popularity,
            s.gbce_t,
            s.ce_max_logits,
            history,
            seq,
            s.in_batch_negatives,
            s.negatives_per_position,
        )

    def configure_optimizers(self) -> Any:
        # fused: one kernel for all parameters where every one is on a GPU (a host-bound step there spends
        # ~1.3 ms a step launching foreach Adam's kernels: benchmarks/RESULTS.md, the H200 batch)
        clip = getattr(self._trainer, "gradient_clip_val", None)  # no trainer attached: None, "32-true"
        precision = str(getattr(self._trainer, "precision", "32-true"))
        devices = {p.device.type for p in self.parameters() if p.requires_grad}
        opt = self.build_optimiser(fused=fused_adam_applies(devices, clip, precision) or None)
        factor = self.lr_schedule(self._fit_steps)
        if factor is None:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _fit_steps(self) -> int:
        """Optimiser steps of the fit (a decaying schedule's span). Lightning estimates batches, which with
        ``data.steps_per_call > 1`` are calls of several steps each."""
        trainer = self.trainer
        estimate = max(int(trainer.estimated_stepping_batches), 1)
        datamodule = getattr(trainer, "datamodule", None)
        # one batch a call, or no epoch limit (the estimate is then max_steps): the estimate counts optimiser steps
        if not isinstance(datamodule, SeqDataModule) or datamodule.settings.steps_per_call == 1:
            return estimate
        if trainer.max_epochs in (None, -1):
            return estimate
        calls = int(trainer.num_training_batches)  # after trainer.limit_train_batches
        per_epoch = min(calls * datamodule.settings.steps_per_call, datamodule.train_steps_per_epoch)
        total = per_epoch * trainer.max_epochs
        return max(min(total, trainer.max_steps) if trainer.max_steps != -1 else total, 1)

    def build_optimiser(self, fused: bool | None = None) -> torch.optim.AdamW:
        """AdamW over the trainable parameters: ``model.weight_decay`` on matrices, none on biases and norms."""
        return adamw(self.parameters(), self.settings, fused)

    def lr_schedule(self, total_steps: Callable[[], int]) -> Callable[[int], float] | None:
        """The learning-rate multiplier by step; None when constant (``total_steps`` asked only when needed)."""
        return lr_schedule(self.settings, total_steps)


@contextmanager
def own_random_state(seed: int | None, device: torch.device) -> Iterator[None]:
    """Random draws inside (dropout, negatives) follow ``seed``; the caller's random state is restored after.

    The global generators of the CPU and of ``device`` (a GPU) are forked, so a library call never
    changes a user's random state. ``seed=None``: the global state is used as it is.
    """
    if seed is None:
        yield
        return
    gpus = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.random.default_generator.manual_seed(seed)
        for gpu in gpus:
            with torch.cuda.device(gpu):
                torch.cuda.manual_seed(seed)
        yield
