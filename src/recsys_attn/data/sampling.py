"""Batch index streams: shuffled per epoch, sharded across DDP ranks, no per-sample Python work."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor


class IndexBatches:
    """Yields ``[B]`` index tensors over ``range(n)``, sharded by rank.

    Training (``shuffle=True``): a permutation seeded by ``(seed, epoch)``, padded by wrapping so every
    rank sees the same number of batches (DDP needs that). Evaluation (``shuffle=False``): rank ``r``
    takes rows ``r, r + world, ...`` with no padding, so each row is seen exactly once overall.
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
    ) -> None:
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.epoch_fn = seed, epoch_fn
        self.rank, self.world_size = rank, world_size

    def _indices(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, self.n, self.world_size)  # [~n / world]
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
        perm = torch.randperm(self.n, generator=gen)  # [n]
        per_rank = -(-self.n // self.world_size)
        if per_rank * self.world_size > self.n:
            perm = torch.cat([perm, perm[: per_rank * self.world_size - self.n]])
        return perm[self.rank :: self.world_size]  # [per_rank]

    def __iter__(self) -> Iterator[Tensor]:
        # A generator: the epoch is read at the first batch, after Lightning has restored a resumed
        # run's loop state (it creates the iterator before that).
        yield from self._indices().split(self.batch_size)

    def __len__(self) -> int:
        n = -(-self.n // self.world_size) if self.shuffle else len(range(self.rank, self.n, self.world_size))
        return -(-n // self.batch_size)
