"""The world of a simulated feedback loop: a cascade click model calibrated from a world model's scores.

A user reads a served slate from the top; at rank ``r`` they take the item with probability
``q_r = κ_r · a[u, item]`` and stop at the first take, so a slate yields at most one item (a cascade). The
attraction ``a[u, i] = sigmoid(log softmax(world scores of u)_i + boost)`` calibrates a world model's scores into
probabilities: with ``boost = log 50`` an item the world gives 2% of its next-item mass is a coin flip. The
reward at a rank depends on its item and the items above it only, which is what the off-policy estimators
assume (``ope_estimators``), and the expected reward of any slate is exact:
``P(take at r) = q_r · Π_{j<r} (1 - q_j)``, summing to ``1 - Π_r (1 - q_r)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.serving.policies import Policy

BOOST = math.log(50.0)
"""``log 50``: the attraction of an item the world gives 1/50 of its next-item probability is 0.5."""


def dcg_position_bias(k: int) -> Tensor:
    """``κ_r = 1 / log2(r + 2)`` ``[k]``: the chance a user reads rank ``r``, NDCG's discount."""
    return 1.0 / torch.log2(torch.arange(k, dtype=torch.float32) + 2.0)


@dataclass(frozen=True)
class ClickModel:
    """The cascade of the module docstring: row ``u`` of ``attraction`` is the user in row ``u`` of every slate."""

    attraction: Tensor  # [U, V] P(take | read), 0 for PAD
    position_bias: Tensor  # [K] κ_r, the chance rank r is read

    @classmethod
    def from_scores(cls, scores: Tensor, position_bias: Tensor, boost: float = BOOST) -> ClickModel:
        """Attractions ``sigmoid(log softmax(scores) + boost)`` from world scores ``[U, V]`` (column 0 = PAD)."""
        s = scores.float().clone()  # [U, V]
        s[:, PAD] = float("-inf")
        return cls(torch.sigmoid(s.log_softmax(1) + boost), position_bias.float())

    def take_rates(self, slates: Tensor) -> Tensor:
        """``q_r = κ_r · a[u, item]`` ``[U, k]`` of each slot (0 for PAD)."""
        k = slates.shape[1]
        if k > self.position_bias.numel():
            raise ValueError(f"slates of {k} items but position_bias covers {self.position_bias.numel()} ranks")
        return self.attraction.gather(1, slates) * self.position_bias[:k]  # [U, k]

    def slot_probabilities(self, slates: Tensor) -> Tensor:
        """P(the user takes the item at rank r) ``[U, k]``: ``q_r · Π_{j<r} (1 - q_j)``."""
        q = self.take_rates(slates)  # [U, k]
        left = torch.cumprod(1.0 - q, dim=1)  # [U, k] nothing taken up to and including r
        above = torch.cat([torch.ones_like(left[:, :1]), left[:, :-1]], dim=1)  # [U, k] nothing taken above r
        return q * above

    def value(self, slates: Tensor) -> Tensor:
        """Expected items taken from each slate ``[U]`` (at most one): ``1 - Π_r (1 - q_r)``."""
        return self.slot_probabilities(slates).sum(1)

    def simulate(self, slates: Tensor, generator: torch.Generator | None) -> Tensor:
        """Rewards ``[U, k]``: 1 at the rank whose item the user takes, else 0 (a cascade draw)."""
        q = self.take_rates(slates)  # [U, k]
        would = torch.rand(q.shape, generator=generator) < q  # [U, k] would take it if read before a take
        return (would & (would.long().cumsum(1) == 1)).float()  # [U, k] only the first


def slate_values(
    policy: Policy, scores: Tensor, click: ClickModel, k: int, draws: int, generator: torch.Generator | None
) -> Tensor:
    """The exact expected take of ``draws`` slates per user drawn by the policy ``[draws, U]``.

    Their mean over draws is a Monte Carlo estimate of each user's true value under the policy (greedy is
    deterministic: one draw is exact).
    """
    return torch.stack([click.value(policy.draw(scores, k, generator)[0]) for _ in range(draws)]).double()


def mean_and_error(values: Tensor, users: Tensor | None = None) -> tuple[float, float]:
    """The mean of ``slate_values`` ``[draws, U]`` over draws and the ``users`` ``[U]`` (bool; None = all), and
    its Monte Carlo standard error (0 for one draw)."""
    v = values if users is None else values[:, users]  # [D, U']
    per_draw = v.mean(1)  # [D]
    se = float(per_draw.std() / per_draw.numel() ** 0.5) if per_draw.numel() > 1 else 0.0
    return float(per_draw.mean()), se
