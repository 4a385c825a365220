"""Bootstrap over users, vectorised: percentile intervals of means and paired tests of mean differences."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import torch
from torch import Tensor

CHUNK_CELLS = 2**24
"""Bootstrap samples x users drawn at once (16M weights = 64 MiB); more samples go in chunks."""


def resampled_means(values: Tensor, n_samples: int, seed: int) -> Tensor:
    """Means ``[n_samples, M]`` of ``values [U, M]`` over users drawn with replacement (seeded, local generator)."""
    return torch.cat(list(_chunks(values.double(), n_samples, seed)), dim=0)


def _chunks(values: Tensor, n_samples: int, seed: int) -> Iterator[Tensor]:
    n_users = values.shape[0]
    for counts in _draw_counts(n_users, n_samples, seed):
        yield counts.to(values) @ values.cpu() / n_users  # [b, M]


def _draw_counts(n_users: int, n_samples: int, seed: int) -> Iterator[Tensor]:
    """How often each user is drawn in each bootstrap sample: chunks ``[b, U]`` covering ``n_samples`` rows.

    Drawing (``randint`` + ``bincount``) is ~90% of an interval's cost, and a training run evaluates the
    same number of users with the same seed every epoch: so the counts of one chunk (most evaluations,
    e.g. 1,000 samples of up to 16,777 users) are drawn once and kept, as bytes, and reused.
    """
    per_chunk = max(1, CHUNK_CELLS // max(n_users, 1))
    if n_samples <= per_chunk:
        yield _kept_counts(n_users, n_samples, seed)
        return
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for start in range(0, n_samples, per_chunk):
        yield _counts(n_users, min(per_chunk, n_samples - start), gen)


@functools.lru_cache(maxsize=4)
def _kept_counts(n_users: int, n_samples: int, seed: int) -> Tensor:
    """``_counts`` of one seeded chunk, kept (read only: callers convert it) as uint8 when every count fits."""
    counts = _counts(n_users, n_samples, torch.Generator(device="cpu").manual_seed(seed))  # [S, U]
    return counts.to(torch.uint8) if counts.numel() == 0 or int(counts.max()) <= 255 else counts


def _counts(n_users: int, b: int, gen: torch.Generator) -> Tensor:
    draws = torch.randint(n_users, (b, n_users), generator=gen)  # [b, U] user drawn at each slot
    offsets = torch.arange(b)[:, None] * n_users  # [b, 1]
    return torch.bincount((draws + offsets).flatten(), minlength=b * n_users).view(b, n_users)  # [b, U]


def bootstrap_ci(values: Tensor, n_samples: int, seed: int, level: float = 0.95) -> tuple[Tensor, Tensor]:
    """Percentile interval ``(lo [M], hi [M])`` of the mean of each column of ``values [U, M]``."""
    means = resampled_means(values, n_samples, seed)  # [S, M]
    alpha = (1.0 - level) / 2.0
    q = torch.tensor([alpha, 1.0 - alpha], dtype=means.dtype)  # [2]
    lo, hi = torch.quantile(means, q, dim=0)  # [M], [M]
    return lo, hi


def paired_bootstrap_pvalue(diffs: Tensor, n_samples: int, seed: int) -> Tensor:
    """Two-sided paired-bootstrap p-value ``[M]`` that each column of per-user differences ``[U, M]`` has mean 0.

    The resampled mean differences are centred on the observed one (the null distribution); the p-value is the
    share of them at least as far from 0 as the observed mean, with the observed sample counted once
    (``(hits + 1) / (n_samples + 1)``), so it is never 0.
    """
    observed = diffs.double().mean(0)  # [M]
    means = resampled_means(diffs, n_samples, seed)  # [S, M]
    extreme = ((means - observed).abs() >= observed.abs() - 1e-12).sum(0)  # [M]
    return (extreme.double() + 1.0) / (n_samples + 1.0)
