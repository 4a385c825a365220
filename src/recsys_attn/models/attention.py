"""Multi-head self-attention shared by the transformer blocks (standard, reference and LiGR)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from recsys_attn.models.rotary import rotate

Rotary = tuple[Tensor, Tensor]
"""``cos`` and ``sin`` ``[L, Dh/2]`` of rotary positions (``models.rotary.rotary_tables``)."""


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``scaled_dot_product_attention``."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"model.hidden_size={hidden} must be divisible by model.num_heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, mask: Tensor, kv: Tensor | None = None, rotary: Rotary | None = None) -> Tensor:
        """Attention of queries from ``x`` ``[B, L, D]`` to keys and values from ``kv`` (default: ``x``); ``rotary``
        rotates queries and keys by their positions."""
        b, n, d = x.shape
        if kv is None:
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, Dh]
        else:  # the same projection (rows q, k, v of one weight), applied to two inputs
            w, bias = self.qkv.weight, self.qkv.bias  # [3D, D], [3D]
            q = F.linear(x, w[:d], bias[:d]).view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, H, L, Dh]
            kv_proj = F.linear(kv, w[d:], bias[d:])  # [B, L, 2D]
            k, v = kv_proj.view(b, n, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 2 x [B, H, L, Dh]
        if rotary is not None:
            q, k = rotate(q, *rotary), rotate(k, *rotary)  # 2 x [B, H, L, Dh]
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # [B, H, L, Dh]
        return self.out(y.transpose(1, 2).reshape(b, n, d))  # [B, L, D]
