"""The optimiser every model trains with: AdamW over two parameter groups, fused where that is safe, and the
learning-rate multiplier by step (linear warm-up, then constant, cosine or linear decay)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from recsys_attn.models.settings import SequentialSettings


def adamw(parameters: Iterable[nn.Parameter], s: SequentialSettings, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable ``parameters``: ``model.weight_decay`` on matrices, none on biases and norms."""
    params = [p for p in parameters if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": s.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=s.lr, betas=(s.betas[0], s.betas[1]), fused=fused)


def lr_schedule(s: SequentialSettings, total_steps: Callable[[], int]) -> Callable[[int], float] | None:
    """The learning-rate multiplier by step (``model.warmup_steps``, ``model.schedule``); None when constant.

    ``total_steps`` is asked only by a schedule that needs it (the trainer's estimate, in a fit).
    """
    if s.warmup_steps == 0 and s.schedule == "constant":
        return None
    total = total_steps()
    return lambda step: lr_factor(step, s.warmup_steps, total, s.schedule)


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


def fused_adam_applies(device_types: set[str], gradient_clip_val: float | None, precision: str) -> bool:
    """Whether AdamW runs fused: every parameter on a GPU, no gradient clipping and no fp16 loss scaling.

    Lightning refuses to clip the gradients of a fused optimiser under mixed precision, and a checkpoint of
    an unfused one resumed under a GradScaler (``16-mixed``) would hand the scale to an unfused step; in
    those cases, and off the GPU, the default implementation stays.
    """
    return device_types == {"cuda"} and not gradient_clip_val and not precision.startswith("16")
