"""The HSTU block (Zhai et al., ICML 2024): pointwise aggregated attention, gated by U, with a relative position bias.

"Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for Generative Recommendations";
code github.com/facebookresearch/generative-recommenders. One block::

    U, V, Q, K = split(SiLU(W_uvqk LN(x)))
    A = SiLU(Q K^T + b[j - i]) / max_len           (masked: causal, padding keys)
    x = x + W_o dropout(LN(A V) * U)

No softmax: each key's weight is its own SiLU, normalised by the longest sequence (the reference divides by
the padded length; the model's ``max_len`` keeps an output independent of the batch's width). ``b`` is a
learned bias per relative position (the reference's position half of its time-and-position bias; the time
buckets need timestamps in the batches, which the samples do not carry yet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class HSTUBlock(nn.Module):
    """One HSTU layer over ``[B, L, D]`` states; the attention mask says which keys each query may read."""

    def __init__(self, hidden: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"model.hidden_size={hidden} must be divisible by model.num_heads={heads}")
        self.heads, self.max_len = heads, max_len
        self.norm_in, self.norm_attn = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.uvqk = nn.Linear(hidden, 4 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.rel_bias = nn.Parameter(torch.zeros(2 * max_len - 1))  # [2 max_len - 1] one per distance j - i
        self.drop = nn.Dropout(dropout)

    def relative_bias(self, n: int, device: torch.device) -> Tensor:
        """``[L, L]``: the learned bias of key ``j`` for query ``i``, by ``j - i`` (padding shifts both alike)."""
        cols = torch.arange(n, device=device)  # [L]
        return self.rel_bias[cols[None, :] - cols[:, None] + self.max_len - 1]  # [L, L]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        u, v, q, k = F.silu(self.uvqk(self.norm_in(x))).chunk(4, dim=-1)  # 4 x [B, L, D]
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # 3 x [B, H, L, Dh]
        scores = q @ k.transpose(-1, -2) + self.relative_bias(n, x.device)  # [B, H, L, L]
        weights = F.silu(scores) / self.max_len * mask  # [B, H, L, L] masked keys weigh 0
        a = (self.drop(weights) @ v).transpose(1, 2).reshape(b, n, d)  # [B, L, D]
        return x + self.out(self.drop(self.norm_attn(a) * u))  # [B, L, D]
