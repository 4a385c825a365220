"""Most-popular baseline: every user gets the items ranked by training-input counts."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from recsys_attn.models.base import RecModule


class Popularity(RecModule):
    """Scores = item counts among training inputs; nothing to train, same evaluation as the others.

    ``fit`` still walks its epochs, so checkpoints, early stopping and the step counters work as for the other
    models: each step is a zero loss of a placeholder parameter and an SGD step with ``lr=0``, which change
    nothing (Lightning warns about a ``training_step`` that returns None and a missing optimizer).
    """

    def __init__(self, n_items: int, item_popularity: Tensor | None = None, **settings: Any) -> None:
        super().__init__(n_items, item_popularity, **settings)
        # Lightning needs a parameter to place on a device and to optimise; its gradient is always 0.
        self._anchor = torch.nn.Parameter(torch.zeros(()))

    def score(self, items: Tensor, times: Tensor | None = None) -> Tensor:
        return self.item_popularity[None, :].expand(items.shape[0], -1)  # [B, n_items + 1]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._anchor * 0.0  # [] a loss whose gradient is 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self._anchor], lr=0.0)
