"""Chunked cross-entropy: the value and gradients of the full softmax, whatever the chunk size."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recsys_attn.models.chunked_ce import chunked_cross_entropy
from recsys_attn.models.losses import LossContext, get_loss
from tests.tolerances import assert_close, cross_entropy_atol, softmax_tol, tol


def reference(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = hidden @ items.T  # [N, V]
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets)


def case(n: int = 37, v: int = 101, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, d, generator=g, dtype=torch.float64) * 2).requires_grad_()
    items = torch.randn(v, d, generator=g, dtype=torch.float64).requires_grad_()
    targets = torch.randint(1, v, (n,), generator=g)
    return hidden, items, targets


@pytest.mark.parametrize("chunk", [1, 7, 50, 100, 101, 1000])
def test_value_and_gradients_match_the_full_softmax(chunk: int) -> None:
    hidden, items, targets = case()
    want = reference(hidden, items, targets)
    want_h, want_w = torch.autograd.grad(want, (hidden, items))
    got = chunked_cross_entropy(hidden, items, targets, chunk)
    got_h, got_w = torch.autograd.grad(got, (hidden, items))
    # it computes in fp32 whatever the inputs (float64 here, as the reference); the gradients to their own scale
    assert got.item() == pytest.approx(want.item(), abs=cross_entropy_atol(torch.float32, hidden, items, want.item()))
    assert_close(got_h, want_h, rtol=softmax_tol(torch.float32, hidden, items), what="d hidden")
    assert_close(got_w, want_w, rtol=softmax_tol(torch.float32, hidden, items), what="d items")
    assert torch.all(got_w[0] == 0)  # padding gets no gradient


def test_hand_computed_value_with_padding_excluded() -> None:
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    hidden = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    loss = chunked_cross_entropy(hidden, items, torch.tensor([1, 2]), chunk=1)
    e = math.e
    want = (math.log(2 * e + 1) - 1 + math.log(1 + 2 * e**2) - 2) / 2
    assert loss.item() == pytest.approx(want, abs=cross_entropy_atol(torch.float32, hidden, items, want))


def test_gradients_scale_with_the_upstream_gradient() -> None:
    hidden, items, targets = case(seed=1)
    (g1,) = torch.autograd.grad(chunked_cross_entropy(hidden, items, targets, 10), (hidden,))
    (g3,) = torch.autograd.grad(3.0 * chunked_cross_entropy(hidden, items, targets, 10), (hidden,))
    # the same fp32 arithmetic but for the factor: each run rounds grad_out / N and its product with the gradient
    assert_close(g3, 3.0 * g1, rtol=tol(torch.float32, 4), what="d hidden")


def test_ce_loss_switches_to_chunks_past_the_logits_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    hidden, items, targets = (t.float().detach() if t.is_floating_point() else t for t in case())
    calls: list[int] = []

    def spy(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, chunk: int) -> torch.Tensor:
        calls.append(chunk)
        return chunked_cross_entropy(h, w, t, chunk)

    monkeypatch.setattr("recsys_attn.models.losses.chunked_cross_entropy", spy)
    ce = get_loss("ce")
    full = ce(hidden, targets, items, LossContext(100, ce_max_logits=37 * 101))
    assert calls == []  # N x V fits: the plain path
    chunked = ce(hidden, targets, items, LossContext(100, ce_max_logits=37 * 20))
    assert calls == [20]  # 20 items per chunk keeps the block at the budget
    assert chunked.item() == pytest.approx(
        full.item(), abs=cross_entropy_atol(torch.float32, hidden, items, full.item())
    )


def test_bf16_autocast_still_sums_in_float32() -> None:
    hidden, items, targets = (t.float().detach() if t.is_floating_point() else t for t in case(v=3000))
    hidden.requires_grad_()
    want = reference(hidden, items, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = chunked_cross_entropy(hidden, items, targets, 256)
    assert got.dtype == torch.float32  # fp32 products: bf16 ones would miss by ~eps(bf16) = 8e-3 of a score
    assert got.item() == pytest.approx(want.item(), abs=cross_entropy_atol(torch.float32, hidden, items, want.item()))
    got.backward()
    assert hidden.grad is not None and hidden.grad.dtype == torch.float32


def test_rejects_a_non_positive_chunk() -> None:
    hidden, items, targets = case()
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        chunked_cross_entropy(hidden, items, targets, 0)
