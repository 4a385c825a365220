"""Batch index streams: shuffled per epoch, sharded across DDP ranks, no per-sample Python work."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor


def batch_seed(*key: int) -> int:
    """A well-mixed seed in ``[0, 2**63)`` for a key of non-negative integers (e.g. seed, epoch, batch, rank).

    Nearby keys give unrelated seeds, so the random streams of two batches never overlap.
    """
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> np.uint64(1))


class IndexBatches:
    """Yields ``[B]`` index tensors over ``range(n)``, sharded by rank.

    Training (``shuffle=True``): a permutation seeded by ``(seed, epoch)``, padded by wrapping so every
    rank sees the same number of batches (DDP needs that). Evaluation (``shuffle=False``): rank ``r``
    takes rows ``r, r + world, ...`` with no padding, so each row is seen exactly once overall.

    With ``lengths`` and ``group > 1`` (training), each run of ``group x batch_size`` shuffled samples is
    sorted by length before it is cut into batches, and the full batches are then shuffled: a batch
    holds samples of similar length, so it is padded (and attended over) far less, while which samples
    meet in a batch still changes every epoch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        epoch_fn: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
        lengths: Tensor | None = None,
        group: int = 1,
    ) -> None:
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.epoch_fn = seed, epoch_fn
        self.rank, self.world_size = rank, world_size
        self.lengths, self.group = lengths, group

    def _indices(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, self.n, self.world_size)  # [~n / world]
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
        perm = torch.randperm(self.n, generator=gen)  # [n]
        per_rank = -(-self.n // self.world_size)
        if per_rank * self.world_size > self.n:
            perm = torch.cat([perm, perm[: per_rank * self.world_size - self.n]])
        mine = perm[self.rank :: self.world_size]  # [per_rank]
        if self.lengths is None or self.group <= 1:
            return mine
        return self._grouped_by_length(mine, self.lengths[mine], gen)

    def _grouped_by_length(self, idx: Tensor, lengths: Tensor, gen: torch.Generator) -> Tensor:
        """``idx`` reordered so consecutive ``batch_size`` runs hold samples of similar ``lengths``."""
        size = self.group * self.batch_size
        n_groups = -(-idx.numel() // size)
        pad = n_groups * size - idx.numel()
        keys = torch.cat([lengths.float(), torch.full((pad,), float("inf"))]).view(n_groups, size)  # [G, S]
        order = keys.argsort(dim=1, descending=True, stable=True)  # [G, S] longest first in each group
        order = order + torch.arange(n_groups)[:, None] * size  # [G, S] positions in the flat tensor
        flat = torch.cat([idx, idx.new_full((pad,), -1)])[order.flatten()]  # [G * S]
        flat = flat[flat >= 0]  # [n] the padding entries (length inf) sorted first; dropped
        full = idx.numel() // self.batch_size
        batches = flat[: full * self.batch_size].view(full, self.batch_size)  # [F, B]
        shuffled = batches[torch.randperm(full, generator=gen)].flatten()  # [F * B]
        return torch.cat([shuffled, flat[full * self.batch_size :]])  # the short last batch stays last

    def __iter__(self) -> Iterator[Tensor]:
        # A generator: the epoch is read at the first batch, after Lightning has restored a resumed
        # run's loop state (it creates the iterator before that).
        yield from self._indices().split(self.batch_size)

    def seeded(self) -> Iterator[tuple[Tensor, int]]:
        """Each batch with its own seed, fixed by (seed, epoch, batch number, rank): a resumed run, or
        the same run again, draws the same randomness for the same batch, from no global state."""
        epoch = self.epoch_fn()
        for number, idx in enumerate(self):
            yield idx, batch_seed(self.seed, epoch, number, self.rank)

    def __len__(self) -> int:
        n = -(-self.n // self.world_size) if self.shuffle else len(range(self.rank, self.n, self.world_size))
        return -(-n // self.batch_size)
