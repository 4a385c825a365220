"""Fused cross-entropy: the value and gradients of ``F.cross_entropy`` over all items but padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import recsys_attn.models.fused_ce as fused
from recsys_attn.models import losses
from recsys_attn.models.fused_ce import fused_cross_entropy
from recsys_attn.models.losses import LossContext, get_loss
from tests.tolerances import assert_close, cross_entropy_atol, softmax_tol


def reference(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The ``ce`` loss as it was computed before the fused version (commit 85f9768)."""
    logits = hidden @ items.T  # [N, V]
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits.float(), targets)


def case(n: int = 300, v: int = 257, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, d, generator=g) * 2).requires_grad_()
    items = torch.randn(v, d, generator=g).requires_grad_()
    targets = torch.randint(1, v, (n,), generator=g)
    return hidden, items, targets


@pytest.mark.parametrize("rows", [1, 7, 128, 300, 4096])
def test_value_and_gradients_match_the_plain_cross_entropy(rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "ROWS", rows)
    hidden, items, targets = case()
    want = reference(hidden, items, targets)
    want_h, want_w = torch.autograd.grad(want, (hidden, items))
    got = fused_cross_entropy(hidden, items, targets)
    got_h, got_w = torch.autograd.grad(2.5 * got, (hidden, items))  # an upstream gradient is applied
    # fp32 inside both (the fused blocks sum in another order); the gradients to their own scale
    assert got.item() == pytest.approx(want.item(), abs=cross_entropy_atol(torch.float32, hidden, items, want.item()))
    rtol = softmax_tol(torch.float32, hidden, items)
    assert_close(got_h, 2.5 * want_h, rtol=rtol, what="d hidden")
    assert_close(got_w, 2.5 * want_w, rtol=rtol, what="d items")
    assert torch.all(got_w[0] == 0)  # padding gets no gradient


@pytest.mark.parametrize("fused", [True, False], ids=["past-the-threshold", "below-it"])
def test_the_ce_loss_uses_it_on_the_cpu_past_its_threshold_and_keeps_its_value(
    monkeypatch: pytest.MonkeyPatch, fused: bool
) -> None:
    calls: list[int] = []

    def spy(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(h.shape[0])
        return fused_cross_entropy(h, w, t)

    monkeypatch.setattr("recsys_attn.models.losses.fused_cross_entropy", spy)
    hidden, items, targets = case()
    # the case's 300 x V logits fall on the chosen side of the threshold
    monkeypatch.setattr(losses, "FUSED_CE_MIN_LOGITS", 0 if fused else hidden.shape[0] * items.shape[0])
    got = get_loss("ce")(hidden, targets, items, LossContext(n_items=items.shape[0] - 1))
    want = reference(hidden, items, targets).item()
    assert calls == ([300] if fused else [])
    assert got.item() == pytest.approx(want, abs=cross_entropy_atol(torch.float32, hidden, items, want))


def test_under_bf16_autocast_the_loss_is_computed_in_fp32() -> None:
    hidden, items, targets = case()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fused_cross_entropy(hidden, items, targets)
    want = reference(hidden, items, targets).item()  # fp32: a bf16 product would miss by ~eps(bf16) = 8e-3 of a score
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, abs=cross_entropy_atol(torch.float32, hidden, items, want))
