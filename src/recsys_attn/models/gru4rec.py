"""GRU4Rec (Hidasi et al. 2016): a GRU over the item sequence, next-item targets, tied item embeddings."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from recsys_attn.constants import PAD
from recsys_attn.models.item_embedding import FeatureEmbedding, ItemEmbedding
from recsys_attn.models.sequential import SequentialRec
from recsys_attn.models.settings import GRUSettings


class GRUEncoder(nn.Module):
    """Item embeddings -> dropout -> GRU layers; the states are scored against the same embeddings.

    A GRU's state moves even on zero inputs (its biases), so left padding would reach the items. Each
    row is rotated to put its items first and its padding last, where the causal GRU reads it only
    after every item: the states at real positions are those of the unpadded sequence, whatever the width.
    """

    def __init__(
        self,
        n_tokens: int,
        hidden: int,
        num_layers: int,
        dropout: float,
        features: FeatureEmbedding | None = None,
        feature_sides: str = "both",
    ) -> None:
        super().__init__()
        self.item_emb = ItemEmbedding(n_tokens, hidden)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()
        self.item_emb.attach(features, feature_sides)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden, hidden, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, items: Tensor) -> Tensor:
        """Hidden states ``[B, L, D]`` for left-padded item ids ``[B, L]``; zero at padding."""
        n = items.shape[1]
        real = items != PAD  # [B, L]
        pad = n - real.sum(1, keepdim=True)  # [B, 1] padded columns before each row's first item
        cols = torch.arange(n, device=items.device)  # [L]
        first = items.gather(1, (cols + pad) % n)  # [B, L] items first, padding last
        states, _ = self.gru(self.drop(self.item_emb(first)))  # [B, L, D]
        back = ((cols - pad) % n)[..., None].expand(-1, -1, states.shape[-1])  # [B, L, D] undo the rotation
        return states.gather(1, back) * real[..., None]  # [B, L, D]

    def item_weights(self, n_items: int) -> Tensor:
        """Output table ``[n_items + 1, D]`` (row 0 = padding): the tied input embeddings (with features, fused)."""
        return self.item_emb.output_table(n_items)


class GRU4Rec(SequentialRec):
    """A GRU encoder under the shared training loop; next-item samples, every loss SASRec has."""

    settings_class: ClassVar[type[GRUSettings]] = GRUSettings
    settings: GRUSettings

    def build_encoder(self, n_tokens: int) -> GRUEncoder:
        s = self.settings
        return GRUEncoder(
            n_tokens, s.hidden_size, s.num_layers, s.dropout, self.feature_layers(n_tokens), s.feature_sides
        )
