"""Transformer sequence encoder shared by SASRec and BERT4Rec (a plain nn.Module, no Lightning)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_attn.constants import PAD

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``scaled_dot_product_attention``."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"model.hidden_size={hidden} must be divisible by model.num_heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, Dh]
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # [B, H, L, Dh]
        return self.out(y.transpose(1, 2).reshape(b, n, d))  # [B, L, D]


class Block(nn.Module):
    """Attention + feed-forward, each with residual, dropout and layer norm (pre- or post-norm)."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        dropout: float,
        norm_first: bool,
        activation: str,
        ff_mult: int,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = SelfAttention(hidden, heads, dropout)
        self.ff = nn.Sequential(
            nn.Linear(hidden, ff_mult * hidden),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(ff_mult * hidden, hidden),
        )
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.norm_first:
            x = x + self.drop(self.attn(self.norm1(x), mask))  # [B, L, D]
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        return self.norm2(x + self.drop(self.ff(x)))


class SequenceEncoder(nn.Module):
    """Item + position embeddings, N transformer blocks; scores = dot product with the item table.

    Positions count from the right (the last column is always position ``max_len - 1``), so a
    left-padded sequence gives the same outputs at its real positions whatever its padded width.
    """

    def __init__(
        self,
        n_tokens: int,
        hidden: int,
        num_blocks: int,
        num_heads: int,
        dropout: float,
        max_len: int,
        causal: bool,
        norm_first: bool = True,
        activation: str = "gelu",
        ff_mult: int = 4,
    ) -> None:
        super().__init__()
        self.causal, self.max_len, self.norm_first = causal, max_len, norm_first
        self.item_emb = nn.Embedding(n_tokens, hidden, padding_idx=PAD)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(hidden, num_heads, dropout, norm_first, activation, ff_mult) for _ in range(num_blocks)
        )
        self.final_norm = nn.LayerNorm(hidden) if norm_first else nn.Identity()
        self.emb_norm = nn.Identity() if norm_first else nn.LayerNorm(hidden)
        self.scale = math.sqrt(hidden)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()

    def attention_mask(self, items: Tensor) -> Tensor:
        """Boolean ``[B, 1, L, L]``: True where a query may attend to a key."""
        n = items.shape[1]
        keys = (items != PAD)[:, None, None, :]  # [B, 1, 1, L]
        eye = torch.eye(n, dtype=torch.bool, device=items.device)  # [L, L] padding rows see themselves
        mask = keys | eye
        if self.causal:
            mask = mask & torch.ones(n, n, dtype=torch.bool, device=items.device).tril()
        return mask

    def forward(self, items: Tensor) -> Tensor:
        """Hidden states ``[B, L, D]`` for left-padded item ids ``[B, L]``; zero at padding."""
        n = items.shape[1]
        if n > self.max_len:
            raise ValueError(f"input length {n} exceeds model.max_len={self.max_len}")
        keep = (items != PAD).unsqueeze(-1)  # [B, L, 1]
        pos = torch.arange(self.max_len - n, self.max_len, device=items.device)  # [L]
        x = self.item_emb(items) * self.scale + self.pos_emb(pos)  # [B, L, D]
        x = self.emb_drop(self.emb_norm(x)) * keep
        mask = self.attention_mask(items)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, mask) * keep  # [B, L, D]
        return self.final_norm(x) * keep

    def item_weights(self, n_items: int) -> Tensor:
        """Output table ``[n_items + 1, D]`` (row 0 = padding): the tied input embeddings."""
        return self.item_emb.weight[: n_items + 1]
