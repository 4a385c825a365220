"""The LiGR block (Gated pre-norm transformer layer) of eSASRec: each residual branch scaled by a learned gate.

"From Features to Transformers: Redefining Ranking for Scalable Impact" (LinkedIn, 2025) and eSASRec
(Tikhonovich et al., RecSys 2025), whose reference (RecTools' ``LiGRLayer``) this follows::

    x = x + sigmoid(W1 x) * dropout(MHA(LN(x)))
    x = x + sigmoid(W2 x) * dropout(SwiGLU(LN(x)))

The gates read the un-normalised residual stream; the feed-forward is SwiGLU without biases.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from recsys_attn.models.attention import Rotary, SelfAttention


class PairedLinear(nn.Linear):
    """Two linear maps of one input stacked in one weight (one product instead of two).

    ``row_blocks`` tells an init by fans (``encoder.xavier_normal``) to treat each half as its own matrix, as the
    reference's two separate layers are initialised.
    """

    row_blocks: ClassVar[int] = 2


class SwiGLU(nn.Module):
    """``W2 (SiLU(W1 x) * W3 x)``: the gated feed-forward of LLaMA-style blocks, ``ff_mult * hidden`` wide."""

    def __init__(self, hidden: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.up = PairedLinear(hidden, 2 * ff_mult * hidden, bias=False)  # W1 and W3 in one product
        self.down = nn.Linear(ff_mult * hidden, hidden, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.up(x).chunk(2, dim=-1)  # 2 x [B, L, F]
        return self.down(self.drop(F.silu(gate) * value))  # [B, L, D]


class LiGRBlock(nn.Module):
    """Pre-norm attention and SwiGLU feed-forward, each residual branch gated by ``sigmoid(W x)``."""

    def __init__(self, hidden: int, heads: int, dropout: float, ff_mult: int) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, heads, dropout)
        self.ff = SwiGLU(hidden, ff_mult, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.gate1, self.gate2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, rotary: Rotary | None = None) -> Tensor:
        x = x + self.gate1(x).sigmoid() * self.drop(self.attn(self.norm1(x), mask, rotary=rotary))  # [B, L, D]
        return x + self.gate2(x).sigmoid() * self.drop(self.ff(self.norm2(x)))  # [B, L, D]
