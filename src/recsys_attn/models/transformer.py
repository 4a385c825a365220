"""Transformer recommenders: encoder + loss + AdamW; SASRec and BERT4Rec only set the direction."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.data.batches import TrainBatch
from recsys_attn.data.history import HistoryIndex
from recsys_attn.models.base import RecModule, fp32_scores
from recsys_attn.models.encoder import SequenceEncoder
from recsys_attn.models.losses import LossContext, get_loss
from recsys_attn.models.settings import TransformerSettings


class TransformerRec(RecModule):
    """Shared training loop: hidden states at positions with a target feed the configured loss."""

    settings_class: ClassVar[type[TransformerSettings]] = TransformerSettings
    causal: ClassVar[bool] = True
    extra_tokens: ClassVar[int] = 0
    """Token ids past the catalogue (BERT4Rec: 1 for MASK)."""

    settings: TransformerSettings

    def __init__(self, n_items: int, item_popularity: Tensor | None = None, **settings: Any) -> None:
        super().__init__(n_items, item_popularity, **settings)
        s = self.settings
        self.loss_fn = get_loss(s.loss)
        self.encoder = SequenceEncoder(
            n_tokens=n_items + 1 + self.extra_tokens,
            hidden=s.hidden_size,
            num_blocks=s.num_blocks,
            num_heads=s.num_heads,
            dropout=s.dropout,
            max_len=s.max_len,
            causal=self.causal,
            norm_first=s.norm_first,
            activation=s.activation,
            ff_mult=s.ff_mult,
        )

    history: HistoryIndex | None = None
    """Training items per sequence, attached from the datamodule at fit (negatives avoid them)."""

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and self.settings.negatives_exclude_history and dm is not None:
            self.history = dm.store.history

    def forward(self, items: Tensor) -> Tensor:
        return self.encoder(items)  # [B, L, D]

    def score(self, items: Tensor) -> Tensor:
        last = self.encoder(items)[:, -1]  # [B, D] state after the history (cloze: at MASK)
        return fp32_scores(last, self.encoder.item_weights(self.n_items))  # [B, n_items + 1] fp32 under autocast

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        hidden = self.encoder(batch.input)  # [B, L, D]
        sel = batch.target != PAD  # [B, L]
        s = self.settings
        history, seq = None, None
        if self.history is not None and batch.seq is not None:
            self.history = history = self.history.to(hidden.device)  # moved once, kept on the training device
            seq = batch.seq[:, None].expand_as(sel)[sel]  # [N] training sequence of each position
        ctx = LossContext(
            self.n_items,
            s.num_negatives,
            s.negative_sampling,
            self.item_popularity,
            s.gbce_t,
            s.ce_max_logits,
            history,
            seq,
        )
        loss = self.loss_fn(hidden[sel], batch.target[sel], self.encoder.item_weights(self.n_items), ctx)
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=int(sel.sum()),
        )
        if batch.expected_targets:  # length-grouped batches: weigh each position as a random batch would
            return loss * (sel.sum() / batch.expected_targets)
        return loss

    def configure_optimizers(self) -> Any:
        s = self.settings
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": s.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=s.lr, betas=(s.betas[0], s.betas[1]))
        if s.warmup_steps == 0 and s.schedule == "constant":
            return opt
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, s.warmup_steps, total, s.schedule))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rate: linear warmup, then constant, cosine or linear decay."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    return 1.0
