"""The HSTU block (Zhai et al., ICML 2024): pointwise aggregated attention, gated by U, with a relative position bias.

"Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for Generative Recommendations";
code github.com/facebookresearch/generative-recommenders. One block::

    U, V, Q, K = split(SiLU(W_uvqk LN(x)))
    A = SiLU(Q K^T + b[j - i]) / max_len           (masked: causal, padding keys)
    x = x + W_o dropout(LN(A V) * U)

No softmax: each key's weight is its own SiLU, normalised by the longest sequence (the reference divides by
the padded length; the model's ``max_len`` keeps an output independent of the batch's width). Dropout acts on
the gated output only, as in the reference (research/modeling/sequential/hstu.py at 2e81fab: its rel_bias path
never reads ``attn_dropout_ratio``, which the ML-1M config leaves at 0), not on the attention weights. ``b`` is a
learned bias per relative position and, with ``time_buckets``, a learned bias per bucket of the time between
query and key (the reference's ``RelativeBucketedTimeAndPositionBasedBias``): ``bucket = floor(ln(max(|dt|, 1))
/ 0.301)`` clamped to ``time_buckets``, ``dt`` in seconds. Departure: the reference measures ``dt`` from the
next event's time (the time the recommendation is asked for); here from the query's own item, the last one
known, so nothing about the target (not even its time) enters the input, and serving needs no request time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TIME_BUCKET_BASE = 0.301
"""The reference's divisor of ``ln |dt|`` (about 3.3 buckets per factor e of elapsed time)."""
NORM_EPS = 1e-6
"""The epsilon of the reference's layer norms (``F.layer_norm`` without weights)."""
BIAS_STD = 0.02
"""The reference's initial spread of the relative position and time biases."""


def time_bucket_ids(times: Tensor, buckets: int) -> Tensor:
    """``[B, L, L]``: the bucket of the time from key ``j`` to query ``i`` of each row of ``times`` ``[B, L]`` (s)."""
    dt = (times[:, :, None] - times[:, None, :]).abs().clamp_min(1)  # [B, L, L] seconds, >= 1
    return (dt.double().log() / TIME_BUCKET_BASE).long().clamp(0, buckets)  # [B, L, L] in 0..buckets


class HSTUBlock(nn.Module):
    """One HSTU layer over ``[B, L, D]`` states; the attention mask says which keys each query may read."""

    time_bias: nn.Parameter | None

    def __init__(self, hidden: int, heads: int, dropout: float, max_len: int, time_buckets: int = 0) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"model.hidden_size={hidden} must be divisible by model.num_heads={heads}")
        self.heads, self.max_len = heads, max_len
        # the reference's F.layer_norm: no learned scale or shift, eps 1e-6
        self.norm_in, self.norm_attn = (nn.LayerNorm(hidden, eps=NORM_EPS, elementwise_affine=False) for _ in range(2))
        self.uvqk = nn.Linear(hidden, 4 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.rel_bias = nn.Parameter(torch.zeros(2 * max_len - 1))  # [2 max_len - 1] one per distance j - i
        # [time_buckets + 1] one per bucket of elapsed time (None: no time bias)
        self.register_parameter("time_bias", nn.Parameter(torch.zeros(time_buckets + 1)) if time_buckets else None)
        for bias in (self.rel_bias, self.time_bias):  # the reference's init of both biases: N(0, 0.02)
            if bias is not None:
                nn.init.normal_(bias, std=BIAS_STD)
        self.drop = nn.Dropout(dropout)

    def relative_bias(self, n: int, device: torch.device) -> Tensor:
        """``[L, L]``: the learned bias of key ``j`` for query ``i``, by ``j - i`` (padding shifts both alike)."""
        cols = torch.arange(n, device=device)  # [L]
        return self.rel_bias[cols[None, :] - cols[:, None] + self.max_len - 1]  # [L, L]

    def forward(self, x: Tensor, mask: Tensor, bucket_ids: Tensor | None = None) -> Tensor:
        """``x`` ``[B, L, D]``, ``mask`` ``[B, 1, L, L]``; ``bucket_ids`` ``[B, L, L]`` (``time_bucket_ids``) when
        the block has a time bias."""
        b, n, d = x.shape
        u, v, q, k = F.silu(self.uvqk(self.norm_in(x))).chunk(4, dim=-1)  # 4 x [B, L, D]
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # 3 x [B, H, L, Dh]
        scores = q @ k.transpose(-1, -2) + self.relative_bias(n, x.device)  # [B, H, L, L]
        if self.time_bias is not None:
            if bucket_ids is None:
                raise ValueError("this HSTU block has a time bias (model.time_buckets > 0): it needs the inputs' times")
            scores = scores + self.time_bias[bucket_ids][:, None]  # [B, H, L, L]
        weights = F.silu(scores) / self.max_len * mask  # [B, H, L, L] masked keys weigh 0
        a = (weights @ v).transpose(1, 2).reshape(b, n, d)  # [B, L, D]
        return x + self.out(self.drop(self.norm_attn(a) * u))  # [B, L, D]
