"""Most-popular baseline: every user gets the items ranked by training-input counts."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from recsys_attn.models.base import RecModule


class Popularity(RecModule):
    """Scores = item counts among training inputs; nothing to train, same evaluation as the others."""

    def __init__(self, n_items: int, item_popularity: Tensor | None = None, **settings: Any) -> None:
        super().__init__(n_items, item_popularity, **settings)
        # Lightning needs a parameter to place on a device; it is never trained.
        self._anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    def score(self, items: Tensor) -> Tensor:
        return self.item_popularity[None, :].expand(items.shape[0], -1)  # [B, n_items + 1]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> Any:
        return None
