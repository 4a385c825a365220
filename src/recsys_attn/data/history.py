"""Which items each training sequence holds, to sample negatives outside a user's own history."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recsys_attn.data.batches import ragged_coo


@dataclass(frozen=True)
class HistoryIndex:
    """Each sequence's distinct items as sorted ``sequence * width + item`` keys.

    ``gaps`` holds, per key, ``sequence * width`` plus the number of items below it that are not in the
    sequence: the r-th item outside a history is then found by one binary search (exact sampling
    from the complement, vectorised, no rejection loop).
    """

    keys: Tensor  # [H] sorted distinct int64 keys
    gaps: Tensor  # [H] sequence * width + (item - its index within the sequence - 1), sorted
    first: Tensor  # [S] index in keys of each sequence's first item
    count: Tensor  # [S] distinct items per sequence
    n_items: int

    @property
    def width(self) -> int:
        return self.n_items + 1

    @classmethod
    def build(cls, values: Tensor, starts: Tensor, ends: Tensor, n_items: int) -> HistoryIndex:
        """Index of the items ``values[starts[s]:ends[s]]`` of every sequence ``s``."""
        seqs, items = ragged_coo(values, starts, ends)  # [H'], [H']
        keys = torch.unique(seqs.long() * (n_items + 1) + items.long())  # [H] sorted, distinct
        seq_of = torch.div(keys, n_items + 1, rounding_mode="floor")  # [H]
        count = torch.bincount(seq_of, minlength=starts.numel())  # [S]
        first = torch.cumsum(count, 0) - count  # [S]
        rank = torch.arange(keys.numel()) - first[seq_of]  # [H] index within its sequence
        gaps = keys - rank - 1  # [H] = sequence * width + items below this one outside the history
        return cls(keys, gaps, first, count, n_items)

    def to(self, device: torch.device) -> HistoryIndex:
        if self.keys.device == device:
            return self
        return HistoryIndex(
            self.keys.to(device), self.gaps.to(device), self.first.to(device), self.count.to(device), self.n_items
        )

    def contains(self, seqs: Tensor, items: Tensor) -> Tensor:
        """Whether each ``items[...]`` is in the history of ``seqs[...]`` (same or broadcastable shapes)."""
        query = seqs.long() * self.width + items.long()  # [...]
        if self.keys.numel() == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, query.reshape(-1)).clamp_max(self.keys.numel() - 1)  # [Q]
        return (self.keys[pos] == query.reshape(-1)).reshape(query.shape)  # [...]

    def sample_outside(self, seqs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One item per entry of ``seqs[...]``, uniform over the items not in that sequence's history.

        A history holding the whole catalogue has no outside: such entries get a uniform item.
        """
        seqs = seqs.long()
        free = self.n_items - self.count[seqs]  # [...]
        u = torch.rand(seqs.shape, device=seqs.device, generator=generator)  # [...]
        r = (u * free.clamp_min(1)).long().clamp_max((free - 1).clamp_min(0))  # [...] r-th outside item, 0-based
        found = torch.searchsorted(self.gaps, (seqs * self.width + r).reshape(-1), right=True).reshape(seqs.shape)
        below = found - self.first[seqs]  # [...] history items below the answer
        uniform = (u * self.n_items).long() + 1  # [...]
        return torch.where(free > 0, r + 1 + below, uniform)  # [...]
