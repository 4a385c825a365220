"""Exploration policies: how the served items are drawn from a user's scores, with their propensities.

A local stand-in with the agreed API (only ``greedy``); the ``policies`` branch brings the real module with
``temperature`` and ``epsilon``, and replaces this file when it is merged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.errors import ConfigError


class Policy(ABC):
    """Draws ``k`` items per row from scores; ``-inf`` marks an item that must not be served."""

    name: str

    def params(self) -> dict[str, float]:
        """The policy's parameters (recorded with what it served)."""
        return {}

    @abstractmethod
    def draw(self, scores: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Items ``[B, k]`` (long) and their propensities ``[B, k]`` (float32) for scores ``[B, V]``.

        A row with fewer than ``k`` servable items gets item 0 (PAD) and propensity 0 in its trailing columns.
        """


class Greedy(Policy):
    """The ``k`` best items, best first; deterministic, so each is served with propensity 1."""

    name = "greedy"

    def draw(self, scores: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        top = scores.topk(min(k, scores.shape[1]), dim=1)  # [B, k]
        servable = top.values > float("-inf")  # [B, k]
        items = torch.where(servable, top.indices, PAD)  # [B, k]
        return items, servable.float()  # [B, k], [B, k]


def make_policy(name: str, temperature: float | None = None, epsilon: float | None = None) -> Policy:
    """The policy called ``name``; a wrong name or parameter fails naming its key."""
    if name != "greedy":
        raise ConfigError(f"policy: {name!r} is not one of greedy (temperature and epsilon are not merged yet)")
    for key, value in (("temperature", temperature), ("epsilon", epsilon)):
        if value is not None:
            raise ConfigError(f"{key}: only for policy={key} (got {value!r} with policy=greedy)")
    return Greedy()
