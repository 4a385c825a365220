"""Full-catalogue cross-entropy without the ``[N, V]`` logits: items are scored a chunk at a time.

Forward keeps a running log-sum-exp over item chunks; backward recomputes each chunk's logits and
adds its softmax into the gradients. Peak memory is ``N x chunk`` instead of ``N x V``, the value and
the gradients are those of ``F.cross_entropy`` over all items (padding row 0 excluded). This is what
lets the ``ce`` loss train on catalogues of millions of items.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: Tensor, items: Tensor, targets: Tensor, chunk: int) -> Tensor:
        h, w = hidden.float(), items.float()  # [N, D], [V, D]
        lse = torch.full((h.shape[0],), float("-inf"), device=h.device)  # [N]
        for start in range(0, w.shape[0], chunk):
            logits = h @ w[start : start + chunk].T  # [N, C]
            if start == 0:
                logits[:, 0] = float("-inf")  # padding is not a class
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1))
        pos = (h * w[targets]).sum(-1)  # [N]
        ctx.save_for_backward(hidden, items, targets, lse)
        ctx.chunk = chunk
        return (lse - pos).mean()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        hidden, items, targets, lse = ctx.saved_tensors
        h, w = hidden.float(), items.float()  # [N, D], [V, D]
        scale = grad_out.float() / h.shape[0]
        grad_h = torch.zeros_like(h)  # [N, D]
        grad_w = torch.zeros_like(w)  # [V, D]
        for start in range(0, w.shape[0], ctx.chunk):
            part = w[start : start + ctx.chunk]  # [C, D]
            probs = torch.exp(h @ part.T - lse[:, None])  # [N, C] softmax over the whole catalogue
            if start == 0:
                probs[:, 0] = 0.0
            grad_h += probs @ part
            grad_w[start : start + ctx.chunk] = probs.T @ h
        grad_h -= w[targets]  # the target's -1 in (softmax - one_hot)
        grad_w.index_add_(0, targets, -h)
        return (grad_h * scale).to(hidden.dtype), (grad_w * scale).to(items.dtype), None, None


def chunked_cross_entropy(hidden: Tensor, items: Tensor, targets: Tensor, chunk: int) -> Tensor:
    """Mean cross-entropy of ``hidden [N, D]`` over all rows of ``items [V, D]`` but row 0, ``chunk`` at a time."""
    if chunk < 1:
        raise ValueError(f"chunked_cross_entropy: chunk must be >= 1, got {chunk}")
    with torch.autocast(device_type=hidden.device.type, enabled=False):  # fp32 sums over up to millions of items
        out: Tensor = _ChunkedCrossEntropy.apply(hidden, items, targets, chunk)
    return out
