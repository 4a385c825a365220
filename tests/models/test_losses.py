"""Loss registry: each loss against a value computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from recsys_attn.models import losses
from recsys_attn.models.losses import LOSSES, LossContext, get_loss
from tests.tolerances import assert_close, tol

# Catalogue of 3 items (row 0 = padding), D = 2. Logits are small integers:
#   hidden[0] = [1, 0] scores items 0..3 as [0, 1, 0, 1]
#   hidden[1] = [0, 2] scores items 0..3 as [0, 0, 2, 2]
ITEMS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # [V=4, D=2]
HIDDEN = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # [N=2, D]
TARGETS = torch.tensor([1, 2])  # positive logits: 1 and 2
N_ITEMS = 3
E = math.e
LOSS_TOL = tol(torch.float32, 16)
"""float32 losses against exact values: scores of 2 terms (exact here), up to 3 exponentials and a log (vectorised,
within ~1 ulp: a rounding or two each), a sum and the mean of 2 rows."""


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def fix_negatives(monkeypatch: pytest.MonkeyPatch, negatives: Tensor) -> list[tuple[int, ...]]:
    """Make ``uniform_negatives`` return ``negatives``; the list returned records the shapes."""
    calls: list[tuple[int, ...]] = []

    def fake(shape: tuple[int, ...], n_items: int, device: torch.device) -> Tensor:
        assert n_items == N_ITEMS
        assert tuple(shape) == tuple(negatives.shape)
        calls.append(tuple(shape))
        return negatives.clone()

    monkeypatch.setattr(losses, "uniform_negatives", fake)
    return calls


def test_registry_holds_the_documented_losses() -> None:
    assert set(LOSSES) == {"ce", "bce", "bpr", "sampled_softmax", "mixed_softmax", "gbce"}
    for name, fn in LOSSES.items():
        assert get_loss(name) is fn


def test_unknown_loss_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"model\.loss: unknown loss 'focal'") as err:
        get_loss("focal")
    assert "known losses: bce, bpr, ce, gbce, mixed_softmax, sampled_softmax" in str(err.value)


def test_uniform_negatives_are_real_items() -> None:
    torch.manual_seed(0)
    neg = losses.uniform_negatives((2000,), 3, torch.device("cpu"))
    assert neg.shape == (2000,)
    assert set(neg.tolist()) == {1, 2, 3}  # never PAD, never past the catalogue


def test_full_cross_entropy_excludes_padding() -> None:
    loss = get_loss("ce")(HIDDEN, TARGETS, ITEMS, LossContext(N_ITEMS))
    # Row 0: logits over items 1..3 = [1, 0, 1], target 1. Row 1: [0, 2, 2], target 2.
    # Were padding a class, its logit 0 would add e^0 = 1 to each denominator.
    row0 = math.log(E + 1 + E) - 1
    row1 = math.log(1 + E**2 + E**2) - 2
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=LOSS_TOL)


def test_full_cross_entropy_leaves_inputs_untouched() -> None:
    items = ITEMS.clone()
    get_loss("ce")(HIDDEN, TARGETS, items, LossContext(N_ITEMS))
    assert torch.equal(items, ITEMS)


def test_bce_one_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fix_negatives(monkeypatch, torch.tensor([[3], [1]]))  # [N, 1]
    loss = get_loss("bce")(HIDDEN, TARGETS, ITEMS, LossContext(N_ITEMS))
    # Row 0: pos logit 1, negative item 3 -> logit 1. Row 1: pos 2, negative item 1 -> 0.
    row0 = softplus(-1) + softplus(1)
    row1 = softplus(-2) + softplus(0)
    assert calls == [(2, 1)]
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=LOSS_TOL)


def test_bpr_one_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    fix_negatives(monkeypatch, torch.tensor([[3], [1]]))
    loss = get_loss("bpr")(HIDDEN, TARGETS, ITEMS, LossContext(N_ITEMS))
    # -log sigmoid(pos - neg): row 0: 1 - 1 = 0 -> log 2; row 1: 2 - 0 = 2 -> log(1 + e^-2).
    expected = (math.log(2) + math.log(1 + E**-2)) / 2
    assert loss.item() == pytest.approx(expected, rel=LOSS_TOL)


def test_sampled_softmax_uniform_is_the_plain_sampled_softmax(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Uniform logQ is a constant shift of every logit and cancels; a negative equal to the target
    is dropped."""
    calls = fix_negatives(monkeypatch, torch.tensor([3, 1, 2]))  # [k] shared by all rows
    ctx = LossContext(N_ITEMS, num_negatives=3, sampling="uniform")
    loss = get_loss("sampled_softmax")(HIDDEN, TARGETS, ITEMS, ctx)
    # Row 0 (target 1, pos 1): negatives 3 -> 1, 1 -> dropped, 2 -> 0.
    # Row 1 (target 2, pos 2): negatives 3 -> 2, 1 -> 0, 2 -> dropped.
    row0 = math.log(E + E + 1) - 1
    row1 = math.log(E**2 + E**2 + 1) - 2
    assert calls == [(3,)]
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=LOSS_TOL)


def test_sampled_softmax_with_only_target_negatives_is_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fix_negatives(monkeypatch, torch.tensor([1, 1]))
    ctx = LossContext(N_ITEMS, num_negatives=2)
    loss = get_loss("sampled_softmax")(HIDDEN[:1], TARGETS[:1], ITEMS, ctx)
    assert loss.item() == 0.0  # the positive is alone in its softmax


def test_sampled_softmax_popularity_logq(monkeypatch: pytest.MonkeyPatch) -> None:
    popularity = torch.tensor([5.0, 1.0, 2.0, 1.0])  # padding's count is ignored
    seen: dict[str, Tensor] = {}

    def fake_multinomial(probs: Tensor, k: int, replacement: bool = False) -> Tensor:
        seen["probs"] = probs.clone()
        assert k == 2
        assert replacement
        return torch.tensor([2, 3])

    monkeypatch.setattr(torch, "multinomial", fake_multinomial)
    ctx = LossContext(N_ITEMS, num_negatives=2, sampling="popularity", popularity=popularity)
    loss = get_loss("sampled_softmax")(HIDDEN, TARGETS, ITEMS, ctx)
    torch.testing.assert_close(seen["probs"], torch.tensor([0.0, 0.25, 0.5, 0.25]))
    # Q = [., 1/4, 1/2, 1/4]; each logit s becomes s - log Q, i.e. e^s / Q inside the softmax.
    # Row 0 (target 1): pos e^1/.25, negs item 2 -> e^0/.5, item 3 -> e^1/.25
    #   loss = log(4e + 2 + 4e) - log(4e) = log(2e + 1/2) - 1
    # Row 1 (target 2): pos e^2/.5, negs item 2 dropped, item 3 -> e^2/.25
    #   loss = log(2e^2 + 4e^2) - log(2e^2) = log 3
    row0 = math.log(2 * E + 0.5) - 1
    row1 = math.log(3)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=LOSS_TOL)
    assert popularity.tolist() == [5.0, 1.0, 2.0, 1.0]  # the context's counts are not modified


def test_mixed_softmax_takes_the_batch_targets_and_uniform_items_with_their_expected_counts_as_q(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fix_negatives(monkeypatch, torch.tensor([3]))  # one uniform negative
    popularity = torch.tensor([5.0, 1.0, 2.0, 1.0])  # training shares 1/4, 1/2, 1/4 (padding ignored)
    ctx = LossContext(N_ITEMS, num_negatives=1, popularity=popularity)
    loss = get_loss("mixed_softmax")(HIDDEN, TARGETS, ITEMS, ctx)
    # candidates: the batch's targets 1, 2 and the uniform 3; Q = 2 x share + 1/3 (expected count among them)
    q1, q2, q3 = 2 * 0.25 + 1 / 3, 2 * 0.5 + 1 / 3, 2 * 0.25 + 1 / 3
    # row 0 (target 1; scores 1, 0, 1): its own copy is not a negative
    row0 = math.log(E / q1 + 1 / q2 + E / q3) - math.log(E / q1)
    # row 1 (target 2; scores 0, 2, 2)
    row1 = math.log(E**2 / q2 + 1 / q1 + E**2 / q3) - math.log(E**2 / q2)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=LOSS_TOL)


def test_mixed_softmax_without_in_batch_negatives_is_the_uniform_sampled_softmax(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fix_negatives(monkeypatch, torch.tensor([3, 1, 2]))
    popularity = torch.tensor([5.0, 1.0, 2.0, 1.0])
    mixed = LossContext(N_ITEMS, num_negatives=3, popularity=popularity, in_batch=0)
    got = get_loss("mixed_softmax")(HIDDEN, TARGETS, ITEMS, mixed)
    plain = get_loss("sampled_softmax")(HIDDEN, TARGETS, ITEMS, LossContext(N_ITEMS, num_negatives=3))
    assert got.item() == pytest.approx(plain.item(), rel=LOSS_TOL)


def test_mixed_softmax_needs_counts() -> None:
    with pytest.raises(ValueError, match="needs the items' training counts"):
        get_loss("mixed_softmax")(HIDDEN, TARGETS, ITEMS, LossContext(N_ITEMS, num_negatives=2))


def test_sampled_softmax_popularity_needs_counts() -> None:
    ctx = LossContext(N_ITEMS, num_negatives=2, sampling="popularity", popularity=None)
    with pytest.raises(ValueError, match="needs item popularity"):
        get_loss("sampled_softmax")(HIDDEN, TARGETS, ITEMS, ctx)


@pytest.mark.parametrize(
    ("t", "beta"),
    [
        (0.75, 0.625),  # alpha = 1/2: beta = 1/2 * (0.75 * (1 - 2) + 2) = 0.625
        (1.0, 0.5),  # t = 1: beta = alpha (fully calibrated)
        (0.0, 1.0),  # t = 0: beta = 1, plain BCE
    ],
)
def test_gbce_beta(monkeypatch: pytest.MonkeyPatch, t: float, beta: float) -> None:
    fix_negatives(monkeypatch, torch.tensor([[3], [1]]))  # k = 1, alpha = 1 / (3 - 1)
    ctx = LossContext(N_ITEMS, num_negatives=1, gbce_t=t)
    loss = get_loss("gbce")(HIDDEN, TARGETS, ITEMS, ctx)
    row0 = beta * softplus(-1) + softplus(1)
    row1 = beta * softplus(-2) + softplus(0)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=LOSS_TOL)


def test_gbce_sums_k_negatives(monkeypatch: pytest.MonkeyPatch) -> None:
    # k = 2 = n_items - 1: alpha = 1, so beta = 1 for every t (no calibration needed).
    fix_negatives(monkeypatch, torch.tensor([[3, 2], [1, 3]]))  # [N, k]
    ctx = LossContext(N_ITEMS, num_negatives=2, gbce_t=0.3)
    loss = get_loss("gbce")(HIDDEN, TARGETS, ITEMS, ctx)
    row0 = softplus(-1) + softplus(1) + softplus(0)
    row1 = softplus(-2) + softplus(0) + softplus(2)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=LOSS_TOL)


def test_gbce_without_calibration_equals_bce(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one negative and beta = 1 (t = 0) gBCE is the SASRec BCE loss."""
    fix_negatives(monkeypatch, torch.tensor([[3], [2]]))
    bce = get_loss("bce")(HIDDEN, TARGETS, ITEMS, LossContext(N_ITEMS))
    gbce = get_loss("gbce")(HIDDEN, TARGETS, ITEMS, LossContext(N_ITEMS, num_negatives=1, gbce_t=0.0))
    torch.testing.assert_close(gbce, bce, rtol=0, atol=0)  # beta = 1 exactly: the same operations as bce


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_are_differentiable_scalars(name: str) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(5, 4, requires_grad=True)
    items = torch.randn(8, 4, requires_grad=True)
    ctx = LossContext(7, num_negatives=4, popularity=torch.arange(8.0))
    loss = get_loss(name)(hidden, torch.tensor([1, 7, 3, 3, 2]), items, ctx)
    assert loss.shape == ()
    assert torch.isfinite(loss)
    loss.backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() > 0
    assert items.grad is not None and torch.isfinite(items.grad).all()
    assert torch.equal(items.grad[0], torch.zeros(4))  # padding's embedding is never scored


def test_negatives_never_come_from_the_positions_history() -> None:
    from recsys_attn.data.history import HistoryIndex
    from recsys_attn.models.losses import negatives_outside_history

    torch.manual_seed(0)
    n_items = 12
    # Three training sequences; the second holds all items but 11 and 12, the third 11 of 12.
    values = torch.tensor([1, 2, 3, *range(1, 11), *range(1, 12)])
    starts, ends = torch.tensor([0, 3, 13]), torch.tensor([3, 13, 24])
    history = HistoryIndex.build(values, starts, ends, n_items)
    seq = torch.tensor([0, 1, 2, 1, 0])  # [N] sequence of each position
    ctx = LossContext(n_items, history=history, seq=seq)
    neg = torch.cat([negatives_outside_history(5, 40, ctx, torch.device("cpu")) for _ in range(50)], 1)  # [5, 2000]
    assert not bool(history.contains(seq[:, None], neg).any())
    assert set(neg[2].tolist()) == {12} and set(neg[1].tolist()) == {11, 12}
    assert set(neg[0].tolist()) == set(range(4, 13))  # every item outside the history can be drawn
    # the old behaviour (no history) draws history items too: the check above can fail
    anywhere = negatives_outside_history(5, 2000, LossContext(n_items), torch.device("cpu"))
    assert bool(history.contains(seq[:, None], anywhere).any())


def test_sampled_softmax_masks_shared_negatives_in_the_history(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys_attn.data.history import HistoryIndex

    fix_negatives(monkeypatch, torch.tensor([3, 3]))
    # position 0 (sequence 0) holds item 3 in its history, position 1 (sequence 1) does not
    history = HistoryIndex.build(torch.tensor([1, 3, 2]), torch.tensor([0, 2]), torch.tensor([2, 3]), N_ITEMS)
    ctx = LossContext(N_ITEMS, num_negatives=2, history=history, seq=torch.tensor([0, 1]))
    loss = get_loss("sampled_softmax")(HIDDEN, TARGETS, ITEMS, ctx)
    log_q = -math.log(N_ITEMS)
    # row 0: only its positive is left (loss 0); row 1: target logit 2 against two negatives of logit 2
    row1 = -(2 - log_q) + math.log(3 * math.exp(2 - log_q))
    assert float(loss) == pytest.approx((0.0 + row1) / 2, rel=LOSS_TOL)


def test_sampled_softmax_per_position_gives_each_position_its_own_negatives(monkeypatch: pytest.MonkeyPatch) -> None:
    """eSASRec's reference: ``[N, k]`` negatives, one row per position; one equal to the target is dropped."""
    calls = fix_negatives(monkeypatch, torch.tensor([[3, 1], [1, 2]]))  # [N, k]
    ctx = LossContext(N_ITEMS, num_negatives=2, per_position=True)
    loss = get_loss("sampled_softmax")(HIDDEN, TARGETS, ITEMS, ctx)
    # Row 0 (target 1, pos 1): its negatives 3 -> 1, 1 -> dropped.  Row 1 (target 2, pos 2): 1 -> 0, 2 -> dropped.
    row0 = math.log(E + E) - 1
    row1 = math.log(E**2 + 1) - 2
    assert calls == [(2, 2)]
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=LOSS_TOL)


def test_sampled_softmax_per_position_popularity_is_logq_corrected(monkeypatch: pytest.MonkeyPatch) -> None:
    popularity = torch.tensor([5.0, 1.0, 2.0, 1.0])  # Q = [., 1/4, 1/2, 1/4]

    def fake_multinomial(probs: Tensor, k: int, replacement: bool = False) -> Tensor:
        assert k == 2 * 1  # N positions x 1 negative
        return torch.tensor([3, 3])

    monkeypatch.setattr(torch, "multinomial", fake_multinomial)
    ctx = LossContext(N_ITEMS, num_negatives=1, sampling="popularity", popularity=popularity, per_position=True)
    loss = get_loss("sampled_softmax")(HIDDEN, TARGETS, ITEMS, ctx)
    # Row 0 (target 1): pos e^1/.25, neg item 3 -> e^1/.25: log 2.  Row 1 (target 2): pos e^2/.5, neg e^2/.25: log 3.
    assert loss.item() == pytest.approx((math.log(2) + math.log(3)) / 2, rel=LOSS_TOL)


@pytest.mark.parametrize("ratio", [0, losses.GATHER_RATIO], ids=["gathered", "whole-table"])
def test_gathered_logits_are_each_states_products_with_its_own_items(
    monkeypatch: pytest.MonkeyPatch, ratio: int
) -> None:
    monkeypatch.setattr(losses, "GATHER_RATIO", ratio)  # 0: always gather; GATHER_RATIO: 40 items <= 64 x 5
    torch.manual_seed(0)
    hidden, items = torch.randn(7, 16), torch.randn(40, 16)  # [N, D], [V, D]
    ids = torch.randint(0, 40, (7, 5))  # [N, k]
    want = torch.stack([items[ids[n]] @ hidden[n] for n in range(7)])  # [N, k] one row at a time
    assert_close(losses.gathered_logits(hidden, items, ids), want, rtol=tol(torch.float32, 16), what="logits")
