"""Exploration policies that turn item scores into a served slate and say how likely each choice was.

A policy fills a slate of ``k`` items rank by rank. Its *propensity* at rank ``r`` is the probability that
it puts that item there given the items above (ranks ``< r``): 1.0 for greedy, the Plackett–Luce choice
probability under ``temperature``, ``epsilon / n_left + (1 - epsilon) * [best left]`` under ``epsilon``.
The product of a slate's propensities is the probability of the whole ordered slate. Logged with each
served item, they are what off-policy evaluation (``recsys_attn.ope``) reweights by.

Scores are ``[B, V]`` with ``-inf`` for items that cannot be served (padding column 0, the user's
history); such items are never drawn. All probability math is fp32 whatever the dtype of the scores.
Greedy ties are broken by the lower item index, the same way in ``draw`` and ``propensities``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.errors import ConfigError

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Policy(ABC):
    """How a slate is drawn from scores; see the module docstring for the propensities."""

    name: ClassVar[str]

    def params(self) -> dict[str, float]:
        """The policy's parameters by name, e.g. ``{"temperature": 0.5}`` (``{}`` for greedy)."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @abstractmethod
    def draw(self, scores: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """A slate per row and its propensities.

        Args:
            scores: ``[B, V]`` float; ``-inf`` = not servable (padding column 0, the user's history).
            k: Slate length (>= 1).
            generator: The random source (its device is where the noise is drawn); None = torch's global one.

        Returns:
            items ``[B, k]`` long (column indices of ``scores``) and propensities ``[B, k]`` float32 =
            P(item at this rank | the items above it). A row with fewer than ``k`` servable items holds
            item 0 (PAD) with propensity 0 in its trailing columns.
        """

    @abstractmethod
    def propensities(self, scores: Tensor, slate: Tensor) -> Tensor:
        """``[B, V]``, ``[B, k]`` -> ``[B, k]``: P(this policy puts each slate item at its rank | the items above).

        An item that is not servable (``-inf``, PAD) or repeats one above it gets 0.
        """

    @abstractmethod
    def expected(self, scores: Tensor, slate: Tensor, values: Tensor) -> Tensor:
        """``[B, V]``, ``[B, k]``, ``[V]`` -> ``[B, k]``: E[values of the item this policy puts at each rank | the slate
        items above] (0 where no servable item is left); the model part of a doubly-robust estimate.
        """


@dataclass(frozen=True)
class Greedy(Policy):
    """The ``k`` best items, best first (today's top-K); every propensity is 1."""

    name: ClassVar[str] = "greedy"

    def draw(self, scores: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        s = _checked(scores, k)  # [B, V]
        items, values = _greedy_order(s, min(k, s.shape[1]))  # [B, k']
        servable = values > NEG_INF  # [B, k']
        items = torch.where(servable, items, PAD)  # [B, k']
        return _pad(items, k), _pad(servable.float(), k)

    def propensities(self, scores: Tensor, slate: Tensor) -> Tensor:
        return _epsilon_propensities(_checked(scores, 1), _checked_slate(slate, scores), 0.0)

    def expected(self, scores: Tensor, slate: Tensor, values: Tensor) -> Tensor:
        return _epsilon_expected(
            _checked(scores, 1), _checked_slate(slate, scores), _checked_values(values, scores), 0.0
        )


@dataclass(frozen=True)
class Temperature(Policy):
    """A Plackett–Luce slate: each rank drawn from softmax(scores / temperature) over the items left.

    Drawn at once by Gumbel-top-k (the ``k`` largest of ``scores / temperature + Gumbel noise``), which has
    exactly this distribution. As the temperature goes to 0 the slate becomes the greedy one.
    """

    name: ClassVar[str] = "temperature"
    temperature: float

    def __post_init__(self) -> None:
        _check_number("temperature", self.temperature)
        if not self.temperature > 0:
            raise ConfigError(f"temperature: must be > 0 (got {self.temperature!r}); small values approach greedy")

    def draw(self, scores: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        s = _checked(scores, k)  # [B, V]
        z = _tempered(s, self.temperature)  # [B, V]
        keys = _uniform(s.shape, generator, s.device)  # [B, V] uniform, made Gumbel in place (memory: V can be 1M)
        keys.clamp_(min=torch.finfo(torch.float32).tiny).log_().neg_().log_().neg_().add_(z)  # [B, V] z + Gumbel
        top = keys.topk(min(k, s.shape[1]), dim=1)  # [B, k']; -inf (not servable) stays last
        del keys
        items = torch.where(top.values > NEG_INF, top.indices, PAD)  # [B, k']
        items = _pad(items, k)  # [B, k]
        return items, _plackett_luce(z, items)

    def propensities(self, scores: Tensor, slate: Tensor) -> Tensor:
        return _plackett_luce(_tempered(_checked(scores, 1), self.temperature), _checked_slate(slate, scores))

    def expected(self, scores: Tensor, slate: Tensor, values: Tensor) -> Tensor:
        z = _tempered(_checked(scores, 1), self.temperature)  # [B, V]
        return _plackett_luce_expected(z, _checked_slate(slate, scores), _checked_values(values, scores))


@dataclass(frozen=True)
class Epsilon(Policy):
    """Each rank: with probability ``epsilon`` a uniformly random servable item not yet shown, else the best left."""

    name: ClassVar[str] = "epsilon"
    epsilon: float

    def __post_init__(self) -> None:
        _check_number("epsilon", self.epsilon)
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"epsilon: must be in [0, 1] (got {self.epsilon!r})")

    def draw(self, scores: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        s = _checked(scores, k)  # [B, V]
        kk = min(k, s.shape[1])
        best, best_values = _greedy_order(s, kk)  # [B, k'] the best items in order
        # A uniformly random order of the servable items: at each rank the first one not yet taken is uniform
        # among the items left (they are exchangeable given everything drawn so far). The best left is likewise
        # the first untaken of ``best``; after r ranks at most r are taken, so k' of each list suffice.
        keys = _uniform(s.shape, generator, s.device).masked_fill_(s == NEG_INF, -1.0)  # [B, V]
        shuffled_top = keys.topk(kk, dim=1)  # [B, k']
        del keys
        shuffled = shuffled_top.indices  # [B, k']
        explore = _uniform((s.shape[0], kk), generator, s.device) < self.epsilon  # [B, k']
        free_best = best_values > NEG_INF  # [B, k']
        free_shuffled = shuffled_top.values >= 0  # [B, k']
        items = torch.full_like(best, PAD)  # [B, k']
        for r in range(kk):
            first_best = best.gather(1, free_best.int().argmax(1, keepdim=True))  # [B, 1] argmax: first True
            first_random = shuffled.gather(1, free_shuffled.int().argmax(1, keepdim=True))  # [B, 1]
            pick = torch.where(explore[:, r : r + 1], first_random, first_best)  # [B, 1]
            left = free_best.any(1, keepdim=True)  # [B, 1] some servable item is left
            items[:, r : r + 1] = torch.where(left, pick, PAD)
            free_best &= best != pick  # [B, k']
            free_shuffled &= shuffled != pick  # [B, k']
        items = _pad(items, k)  # [B, k]
        return items, _epsilon_propensities(s, items, self.epsilon)

    def propensities(self, scores: Tensor, slate: Tensor) -> Tensor:
        return _epsilon_propensities(_checked(scores, 1), _checked_slate(slate, scores), self.epsilon)

    def expected(self, scores: Tensor, slate: Tensor, values: Tensor) -> Tensor:
        s, v = _checked(scores, 1), _checked_values(values, scores)  # [B, V], [V]
        return _epsilon_expected(s, _checked_slate(slate, scores), v, self.epsilon)


POLICIES: dict[str, type[Policy]] = {"greedy": Greedy, "temperature": Temperature, "epsilon": Epsilon}


def make_policy(name: str, temperature: float | None = None, epsilon: float | None = None) -> Policy:
    """The policy called ``name`` with its parameter; a parameter of another policy must be left None.

    Raises:
        ConfigError: naming ``policy``, ``temperature`` or ``epsilon``: an unknown name, a missing or
            out-of-range parameter, or one the chosen policy does not read.
    """
    if name not in POLICIES:
        raise ConfigError(f"policy: {name!r} is not one of {', '.join(POLICIES)}")
    given = {"temperature": temperature, "epsilon": epsilon}
    for key, value in given.items():
        if value is not None and key != name:
            raise ConfigError(f"{key}: only policy={key} reads it, not policy={name}; leave it null")
    if name == "greedy":
        return Greedy()
    value = given[name]
    if value is None:
        example = "temperature=0.5" if name == "temperature" else "epsilon=0.1"
        raise ConfigError(f"{name}: policy={name} needs it, e.g. {example}")
    _check_number(name, value)
    return Temperature(float(value)) if name == "temperature" else Epsilon(float(value))


def _check_number(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number (got {value!r})")


def _checked(scores: Tensor, k: int) -> Tensor:
    """``scores`` as fp32 ``[B, V]``, refusing NaN, ``+inf`` and ``k < 1``."""
    if scores.dim() != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores: expected [B, V] with V >= 1, got shape {tuple(scores.shape)}")
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    s = scores.float()  # [B, V]
    if bool((s.isnan() | (s == float("inf"))).any()):
        raise ValueError("scores: NaN or +inf; a servable item needs a finite score, -inf marks the others")
    return s


def _checked_values(values: Tensor, scores: Tensor) -> Tensor:
    if values.shape != (scores.shape[1],) or not bool(values.isfinite().all()):
        raise ValueError(
            f"values: expected {scores.shape[1]} finite numbers (one per column), got {tuple(values.shape)}"
        )
    return values.float().to(scores.device)


def _checked_slate(slate: Tensor, scores: Tensor) -> Tensor:
    if slate.dim() != 2 or slate.shape[0] != scores.shape[0] or slate.dtype != torch.long:
        got = f"{slate.dtype} {tuple(slate.shape)}"
        raise ValueError(f"slate: expected long [B, k] with B = {scores.shape[0]}, got {got}")
    if slate.numel() and (int(slate.min()) < 0 or int(slate.max()) >= scores.shape[1]):
        raise ValueError(f"slate: item indices must be in [0, {scores.shape[1]})")
    return slate


def _uniform(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) fp32 noise drawn on the generator's device (a seed gives one draw), moved to ``device``."""
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where, dtype=torch.float32).to(device)


def _pad(t: Tensor, k: int) -> Tensor:
    """``[B, k']`` -> ``[B, k]`` with zeros (PAD, propensity 0) appended when ``k' < k``."""
    return torch.nn.functional.pad(t, (0, k - t.shape[1])) if t.shape[1] < k else t


def _greedy_order(s: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best items ``[B, k]`` and their scores, best first, equal scores by lower index.

    ``topk`` alone breaks ties in no documented order; a tie at the cut (more items share the k-th score
    than fit) takes the lowest-indexed of them, so ``draw`` and ``propensities`` agree on the best item.
    """
    top = s.topk(k, dim=1)  # [B, k]
    items, values = top.indices, top.values  # [B, k]
    kth = values[:, -1:]  # [B, 1]
    n_tied_in = (values == kth).sum(1)  # [B]
    cut = ((s == kth).sum(1) > n_tied_in) & kth[:, 0].isfinite()  # [B] a tie split by the cut
    if bool(cut.any()):
        rows = cut.nonzero()[:, 0]  # [C]
        cols = torch.arange(s.shape[1], device=s.device)  # [V]
        tied = s[rows] == kth[rows]  # [C, V]
        lowest = torch.where(tied, -cols, -s.shape[1]).topk(k, dim=1).indices  # [C, k] tied items, ascending
        first = (k - n_tied_in[rows])[:, None]  # [C, 1] first slot of the tied score
        slot = torch.arange(k, device=s.device)  # [k]
        from_tied = lowest.gather(1, (slot - first).clamp(min=0))  # [C, k]
        items[rows] = torch.where(slot >= first, from_tied, items[rows])  # [C, k]
    items, order = items.sort(dim=1)  # [B, k] by index, then (stably) by score: equal scores by index
    values = values.gather(1, order)  # [B, k]
    values, order = values.sort(dim=1, descending=True, stable=True)  # [B, k]
    return items.gather(1, order), values


def _fresh(s: Tensor, slate: Tensor) -> Tensor:
    """``[B, k]``: the slate item is servable and not a repeat of an item above it."""
    servable = s.gather(1, slate) > NEG_INF  # [B, k]
    repeat = ((slate[:, :, None] == slate[:, None, :]).tril(diagonal=-1)).any(2)  # [B, k] same item higher up
    return servable & ~repeat


class _Left(NamedTuple):
    """What is left at each rank of a slate ``[B, k]`` once the (fresh) slate items above it are taken."""

    fresh: Tensor  # [B, k] the slate item is servable and no repeat
    n_left: Tensor  # [B, k] servable items not above this rank
    best: Tensor  # [B, k] the best item left (greedy's choice), PAD when none
    has_best: Tensor  # [B, k] some servable item is left


def _left(s: Tensor, slate: Tensor) -> _Left:
    fresh = _fresh(s, slate)  # [B, k]
    k = slate.shape[1]
    n_left = (s > NEG_INF).sum(1, keepdim=True) - (fresh.cumsum(1) - fresh.long())  # [B, k]
    best, best_values = _greedy_order(s, min(k, s.shape[1]))  # [B, k']
    # taken[b, r, j]: best[b, j] is a (fresh) slate item above rank r; after r ranks the first r + 1 of the
    # greedy order hold an untaken item whenever any servable item is left
    match = (slate[:, :, None] == best[:, None, :]) & fresh[:, :, None]  # [B, k, k']
    taken = (match.cumsum(1) - match.long()) > 0  # [B, k, k']
    free = ~taken & (best_values > NEG_INF)[:, None, :]  # [B, k, k']
    has_best = free.any(2)  # [B, k]
    best_left = torch.where(has_best, best.gather(1, free.int().argmax(2)), PAD)  # [B, k] argmax: first free
    return _Left(fresh, n_left, best_left, has_best)


def _epsilon_propensities(s: Tensor, slate: Tensor, epsilon: float) -> Tensor:
    """``epsilon / n_left + (1 - epsilon) * [item is the best left]`` per rank ``[B, k]`` (0 for unfresh items)."""
    left = _left(s, slate)
    is_best = left.has_best & (left.best == slate)  # [B, k]
    p = epsilon / left.n_left.clamp(min=1).float() + (1.0 - epsilon) * is_best.float()  # [B, k]
    return torch.where(left.fresh, p, 0.0)


def _epsilon_expected(s: Tensor, slate: Tensor, values: Tensor, epsilon: float) -> Tensor:
    """``epsilon * mean(values of the items left) + (1 - epsilon) * values[best left]`` per rank ``[B, k]``."""
    left = _left(s, slate)
    v = values.double()  # [V] sums of many values: float64 so taking the items above cancels exactly enough
    total = torch.where(s > NEG_INF, v, 0.0).sum(1, keepdim=True)  # [B, 1] over servable items
    shown = torch.where(left.fresh, v[slate], 0.0)  # [B, k]
    mean_left = (total - (shown.cumsum(1) - shown)) / left.n_left.clamp(min=1)  # [B, k]
    e = epsilon * mean_left + (1.0 - epsilon) * v[left.best]  # [B, k]
    return torch.where(left.has_best, e, 0.0).float()


def _tempered(s: Tensor, temperature: float) -> Tensor:
    """``(scores - row max) / temperature`` ``[B, V]``: at most 0, so a tiny temperature cannot overflow.

    Servable items stay finite (clamped to the lowest float) however small the temperature; ``-inf`` stays.
    """
    top = s.max(dim=1, keepdim=True).values  # [B, 1]
    top = torch.where(top > NEG_INF, top, 0.0)  # [B, 1] a row with nothing servable
    z = (s - top).div_(temperature).clamp_(min=torch.finfo(torch.float32).min)  # [B, V] in place: one copy
    return z.masked_fill_(s == NEG_INF, NEG_INF)


def _plackett_luce(z: Tensor, slate: Tensor) -> Tensor:
    """Plackett–Luce choice probabilities ``[B, k]`` of the slate items under logits ``z [B, V]``.

    At rank r the items left are the non-slate items (one log-sum-exp, the same for every rank) and the
    slate items at ranks >= r (a suffix log-sum-exp of k values): one V-wide pass, not one per rank.
    """
    fresh = _fresh(z, slate)  # [B, k]
    zs = torch.where(fresh, z.gather(1, slate), NEG_INF)  # [B, k]
    rest = z.scatter(1, slate, NEG_INF).logsumexp(1, keepdim=True)  # [B, 1] items never in the slate
    suffix = zs.flip(1).logcumsumexp(1).flip(1)  # [B, k] slate items at this rank or below
    left = torch.logaddexp(rest, suffix)  # [B, k] log-normaliser at each rank
    return torch.where(fresh, (zs - left).exp(), 0.0)


def _plackett_luce_expected(z: Tensor, slate: Tensor, values: Tensor) -> Tensor:
    """E[values of the Plackett–Luce choice at each rank | the slate items above] ``[B, k]`` under logits ``z``.

    The items left at rank r are the non-slate items (their softmax mean of ``values``, once) and the
    slate items at ranks >= r (``k x k`` weights), as in ``_plackett_luce``.
    """
    fresh = _fresh(z, slate)  # [B, k]
    zs = torch.where(fresh, z.gather(1, slate), NEG_INF)  # [B, k]
    rest = z.scatter(1, slate, NEG_INF)  # [B, V]
    rest_lse = rest.logsumexp(1, keepdim=True)  # [B, 1]
    shift = torch.where(rest_lse > NEG_INF, rest_lse, 0.0)  # [B, 1] nothing left outside the slate: weights 0
    rest_mean = ((rest - shift).exp() * values).sum(1, keepdim=True)  # [B, 1]
    left = torch.logaddexp(rest_lse, zs.flip(1).logcumsumexp(1).flip(1))  # [B, k] log-normaliser per rank
    safe = torch.where(left > NEG_INF, left, 0.0)  # [B, k]
    below = torch.ones(slate.shape[1], slate.shape[1], dtype=torch.bool, device=z.device).triu()  # [k, k] j >= r
    w = torch.where(below, (zs[:, None, :] - safe[:, :, None]).exp(), 0.0)  # [B, k(rank), k(slate item)]
    e = (rest_lse - safe).exp() * rest_mean + (w * values[slate][:, None, :]).sum(2)  # [B, k]
    return torch.where(left > NEG_INF, e, 0.0)
