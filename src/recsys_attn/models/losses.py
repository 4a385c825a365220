"""Training losses in a registry: ``model.loss=<name>`` picks one.

Every loss takes the hidden states of the positions that have a target (``[N, D]``), their targets
(``[N]``, ids in ``1..n_items``) and the item table (``[n_items + 1, D]``, row 0 = padding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.data.history import HistoryIndex
from recsys_attn.models.chunked_ce import chunked_cross_entropy
from recsys_attn.models.fused_ce import fused_cross_entropy

GATHER_RATIO = 64
"""``gathered_logits`` multiplies against the whole table while it has at most this many items per negative."""
FUSED_CE_MIN_LOGITS = 2**21
"""``ce`` on the CPU: the fused two-pass loss past this many ``positions x items`` logits, the plain one below. On 2
AMD EPYC cores (one thread, forward + backward, 2026-12-05): fused/plain 1.75 at 110 x 101 logits, 1.01-1.03 at 0.25M
and 1M, 0.97 at 6.8M, 0.67 at 22M."""
CE_MAX_LOGITS = 2**27
"""Default of ``model.ce_max_logits``: the largest positions x items logits block ``ce`` builds (512 MiB of fp32)."""


@dataclass(frozen=True)
class LossContext:
    """What a loss may need beyond hidden states and targets."""

    n_items: int
    num_negatives: int = 256
    sampling: str = "uniform"
    """Negative sampling for ``sampled_softmax``: ``uniform`` or ``popularity`` (with logQ correction)."""
    popularity: Tensor | None = None
    """Item counts ``[n_items + 1]`` for popularity sampling."""
    gbce_t: float = 0.75
    """gSASRec calibration parameter t in [0, 1]."""
    ce_max_logits: int = CE_MAX_LOGITS
    """Largest ``positions x items`` logits block ``ce`` builds at once; past it, items go in chunks."""
    history: HistoryIndex | None = None
    """Training items of each sequence: sampled negatives are drawn outside them (None = anywhere)."""
    seq: Tensor | None = None
    """``[N]`` training sequence of each position, to look ``history`` up."""
    in_batch: int | None = None
    """``mixed_softmax``: the batch's targets used as negatives (None = all)."""
    per_position: bool = False
    """``sampled_softmax``: each position draws its own ``num_negatives`` (False: one draw shared by the batch)."""


LossFn = Callable[[Tensor, Tensor, Tensor, LossContext], Tensor]
LOSSES: dict[str, LossFn] = {}


def register(name: str) -> Callable[[LossFn], LossFn]:
    """Add a loss function to the registry under ``name``."""

    def wrap(fn: LossFn) -> LossFn:
        LOSSES[name] = fn
        return fn

    return wrap


def uniform_negatives(shape: tuple[int, ...], n_items: int, device: torch.device) -> Tensor:
    """Item ids drawn uniformly from ``1..n_items``."""
    return torch.randint(1, n_items + 1, shape, device=device)


def negatives_outside_history(n: int, k: int, ctx: LossContext, device: torch.device) -> Tensor:
    """``[n, k]`` uniform item ids, none in its position's training history (as the SASRec reference code).

    Without a history (``model.negatives_exclude_history=false``) they are uniform over the catalogue.
    """
    if ctx.history is None or ctx.seq is None:
        return uniform_negatives((n, k), ctx.n_items, device)
    return ctx.history.sample_outside(ctx.seq[:, None].expand(n, k))  # [n, k]


def gathered_logits(hidden: Tensor, items: Tensor, ids: Tensor) -> Tensor:
    """``[N, k]`` dot products of each state ``[N, D]`` with its own items ``ids`` ``[N, k]`` of the table ``[V, D]``.

    Two ways to the same numbers: gathering the ``[N, k, D]`` item vectors, or the ``[N, V]`` logits against the
    whole table and picking columns. The second moves ``V`` floats a row instead of ``k * D`` and multiplies in
    one matrix product: the cheaper while ``V <= GATHER_RATIO * k`` (GATHER_RATIO from benchmarks/bench_negatives.py).
    """
    if items.shape[0] <= GATHER_RATIO * ids.shape[1]:
        return (hidden @ items.T).gather(1, ids)  # [N, k]
    return torch.einsum("nd,nkd->nk", hidden, items[ids])  # [N, k]


def _pos_neg_logits(hidden: Tensor, targets: Tensor, items: Tensor, k: int, ctx: LossContext) -> tuple[Tensor, Tensor]:
    pos = (hidden * items[targets]).sum(-1)  # [N]
    neg_ids = negatives_outside_history(targets.numel(), k, ctx, hidden.device)  # [N, k]
    return pos, gathered_logits(hidden, items, neg_ids)  # [N], [N, k]


@register("ce")
def full_cross_entropy(hidden: Tensor, targets: Tensor, items: Tensor, ctx: LossContext) -> Tensor:
    """Softmax over the whole catalogue (padding excluded); in item chunks when the logits would not fit.

    On the CPU, where streaming the ``[N, V]`` logits through memory dominates, the fused two-pass
    version past ``FUSED_CE_MIN_LOGITS`` logits; below it, and on accelerators, the plain one (autocast's matmul
    precision, fused kernels).
    """
    logits_count = hidden.shape[0] * items.shape[0]
    if logits_count > ctx.ce_max_logits:
        return chunked_cross_entropy(hidden, items, targets, chunk=max(1, ctx.ce_max_logits // hidden.shape[0]))
    if hidden.device.type == "cpu" and logits_count > FUSED_CE_MIN_LOGITS:
        return fused_cross_entropy(hidden, items, targets)
    logits = hidden @ items.T  # [N, V]
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits.float(), targets)


def masked_cross_entropy(hidden: Tensor, targets: Tensor, items: Tensor) -> Tensor:
    """``ce`` over every row of ``hidden`` ``[N, D]`` whose target ``[N]`` is not PAD, with no data-dependent shape.

    The mean over the rows with a target, as ``full_cross_entropy`` over those rows alone (padding excluded from
    the softmax): what a static-shape step computes (``model.static_shapes``).
    """
    logits = (hidden @ items.T).float()  # [N, V]
    pad = torch.arange(items.shape[0], device=items.device) == PAD  # [V]
    logits = logits.masked_fill(pad[None, :], float("-inf"))  # [N, V]
    return F.cross_entropy(logits, targets, ignore_index=PAD)  # [] mean over the targets that are not PAD


@register("bce")
def bce_one_negative(hidden: Tensor, targets: Tensor, items: Tensor, ctx: LossContext) -> Tensor:
    """Binary cross-entropy with one uniform negative per position (the SASRec paper)."""
    pos, neg = _pos_neg_logits(hidden, targets, items, 1, ctx)  # [N], [N, 1]
    return (F.softplus(-pos) + F.softplus(neg[:, 0])).mean()


@register("bpr")
def bpr(hidden: Tensor, targets: Tensor, items: Tensor, ctx: LossContext) -> Tensor:
    """Pairwise BPR: -log sigmoid(pos - neg) with one uniform negative per position."""
    pos, neg = _pos_neg_logits(hidden, targets, items, 1, ctx)
    return F.softplus(-(pos - neg[:, 0])).mean()


def _training_shares(popularity: Tensor, device: torch.device) -> Tensor:
    """``[V]`` each item's share of the training interactions (``popularity``: counts; padding 0)."""
    share = popularity.to(device, torch.float32).clone()  # [V]
    share[0] = 0.0  # padding is never a candidate
    return share / share.sum().clamp_min(1.0)


def _corrected_softmax(
    hidden: Tensor, targets: Tensor, items: Tensor, cand: Tensor, log_q: Tensor, ctx: LossContext
) -> Tensor:
    """Softmax of each position's target against the shared candidates ``cand`` ``[C]``, every logit shifted by
    ``-log_q`` ``[V]``; a candidate equal to the target (or, with a history, in the position's training history)
    is not a negative."""
    pos = (hidden * items[targets]).sum(-1, keepdim=True) - log_q[targets, None]  # [N, 1]
    neg = hidden @ items[cand].T - log_q[cand][None, :]  # [N, C]
    drop = cand[None, :] == targets[:, None]  # [N, C]
    if ctx.history is not None and ctx.seq is not None:  # shared candidates: mask those in each history
        drop |= ctx.history.contains(ctx.seq[:, None], cand[None, :])
    logits = torch.cat([pos, neg.masked_fill(drop, float("-inf"))], dim=1).float()  # [N, 1 + C]
    return F.cross_entropy(logits, torch.zeros_like(targets))


@register("sampled_softmax")
def sampled_softmax(hidden: Tensor, targets: Tensor, items: Tensor, ctx: LossContext) -> Tensor:
    """Softmax over the target and ``num_negatives`` sampled items, logQ-corrected: one draw shared by the
    batch, or each position's own (``model.negatives_per_position``, eSASRec's reference).

    Every candidate's logit is shifted by ``-log Q(item)`` (Q: the sampling distribution), which makes
    the sampled softmax an unbiased estimate of the full one; negatives equal to the target (or, with a
    history, in the position's training history) are dropped.
    """
    k = ctx.num_negatives
    n = targets.numel() if ctx.per_position else 1
    if ctx.sampling == "popularity":
        if ctx.popularity is None:
            raise ValueError("model.negative_sampling=popularity needs item popularity from the datamodule")
        probs = _training_shares(ctx.popularity, hidden.device)  # [V]
        drawn = torch.multinomial(probs, n * k, replacement=True)  # [n k]
        neg_ids = drawn.view(n, k) if ctx.per_position else drawn  # [N, k] or [k]
        log_q = torch.log(probs.clamp_min(1e-12))  # [V]
    else:
        log_q = torch.full((items.shape[0],), -math.log(ctx.n_items), device=hidden.device)  # [V]
        if ctx.per_position:  # each position's own, outside its history where there is one (as bce's, gbce's)
            neg_ids = negatives_outside_history(n, k, ctx, hidden.device)  # [N, k]
        else:
            neg_ids = uniform_negatives((k,), ctx.n_items, hidden.device)  # [k]
    if ctx.per_position:
        return _own_negatives_softmax(hidden, targets, items, neg_ids, log_q, ctx)
    return _corrected_softmax(hidden, targets, items, neg_ids, log_q, ctx)


def _own_negatives_softmax(
    hidden: Tensor, targets: Tensor, items: Tensor, neg_ids: Tensor, log_q: Tensor, ctx: LossContext
) -> Tensor:
    """Softmax of each position's target against its own negatives ``neg_ids`` ``[N, k]``, logits shifted by
    ``-log_q`` ``[V]``; a negative equal to the target (or, with a history, in the position's training history)
    is not a negative."""
    pos = (hidden * items[targets]).sum(-1, keepdim=True) - log_q[targets, None]  # [N, 1]
    neg = gathered_logits(hidden, items, neg_ids) - log_q[neg_ids]  # [N, k]
    drop = neg_ids == targets[:, None]  # [N, k]
    if ctx.history is not None and ctx.seq is not None:
        drop |= ctx.history.contains(ctx.seq[:, None], neg_ids)
    logits = torch.cat([pos, neg.masked_fill(drop, float("-inf"))], dim=1).float()  # [N, 1 + k]
    return F.cross_entropy(logits, torch.zeros_like(targets))


@register("mixed_softmax")
def mixed_softmax(hidden: Tensor, targets: Tensor, items: Tensor, ctx: LossContext) -> Tensor:
    """Sampled softmax over the target, the batch's targets (in-batch negatives) and ``num_negatives`` uniform
    items, every candidate's logit corrected by ``-log Q`` (mixed negative sampling, Yang et al. 2020; eSASRec).

    The in-batch candidates are drawn as the training data's items are (each position's target), so an item
    appears among the candidates ``in_batch * p(item) + num_negatives / n_items`` times in expectation, ``p`` its
    share of the training interactions: that expectation is the ``Q`` corrected for, on the positive too. A
    candidate equal to the position's target (its own copy in the batch, another position with the same
    target) is not a negative; with a history, neither are the items of the position's training history.
    """
    if ctx.popularity is None:
        raise ValueError("model.loss=mixed_softmax needs the items' training counts (item_popularity) for logQ")
    n, k = targets.numel(), ctx.num_negatives
    in_batch = n if ctx.in_batch is None else min(ctx.in_batch, n)
    chosen = targets if in_batch == n else targets[torch.randperm(n, device=targets.device)[:in_batch]]  # [B']
    cand = torch.cat([chosen, uniform_negatives((k,), ctx.n_items, hidden.device)])  # [C]
    share = _training_shares(ctx.popularity, hidden.device)  # [V]
    log_q = torch.log((in_batch * share + k / ctx.n_items).clamp_min(1e-12))  # [V] expected count among candidates
    return _corrected_softmax(hidden, targets, items, cand, log_q, ctx)


@register("gbce")
def gbce(hidden: Tensor, targets: Tensor, items: Tensor, ctx: LossContext) -> Tensor:
    """gSASRec's generalised BCE: positive term raised to beta, ``num_negatives`` uniform negatives.

    ``alpha = k / (n_items - 1)``, ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)`` (Petrov & Macdonald 2023).
    """
    k = ctx.num_negatives
    alpha = k / max(ctx.n_items - 1, 1)
    beta = alpha * (ctx.gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
    pos, neg = _pos_neg_logits(hidden, targets, items, k, ctx)  # [N], [N, k]
    return (beta * F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()


def get_loss(name: str) -> LossFn:
    """The registered loss ``name``; the error lists the known ones."""
    if name not in LOSSES:
        raise KeyError(f"model.loss: unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
