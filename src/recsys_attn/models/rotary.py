"""Rotary position embeddings (Su et al., "RoFormer", 2021): positions as rotations of queries and keys.

Each pair of a head's dimensions ``(x_a, x_{a + Dh/2})`` of the query at position ``i`` (and of the key at ``j``)
is rotated by the angle ``i * base^(-2a/Dh)``, so ``q_i . k_j`` depends on the positions only through ``i - j``:
attention sees relative positions, and left padding (which shifts every real position alike) changes nothing.
The half-split pairing is GPT-NeoX's (one ``cat`` instead of interleaving).
"""

from __future__ import annotations

import torch
from torch import Tensor

ROTARY_BASE = 10_000.0
"""The wavelength base of RoFormer and most language models."""


def rotary_tables(n: int, head_dim: int, device: torch.device, base: float = ROTARY_BASE) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` ``[L, Dh/2]`` of the angle of each position ``0..n-1`` and dimension pair."""
    if head_dim % 2:
        raise ValueError(f"rotary positions pair a head's dimensions: model.hidden_size / model.num_heads = {head_dim}")
    inverse = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)  # [Dh/2]
    angles = torch.arange(n, device=device, dtype=torch.float32)[:, None] * inverse[None, :]  # [L, Dh/2]
    return angles.cos(), angles.sin()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x`` ``[B, H, L, Dh]`` with each position's dimension pairs rotated by its angles (``rotary_tables``)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # 2 x [B, H, L, Dh/2]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)  # [B, H, L, Dh]
