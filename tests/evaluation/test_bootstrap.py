"""Bootstrap intervals and the paired test: seeded, calibrated on known cases."""

from __future__ import annotations

import pytest
import torch

from recsys_attn.evaluation import bootstrap
from recsys_attn.evaluation.bootstrap import bootstrap_ci, paired_bootstrap_pvalue, resampled_means
from tests.tolerances import assert_close, sum_tol


def test_interval_brackets_the_mean_with_the_normal_width() -> None:
    values = (torch.arange(400) % 2).double()[:, None]  # Bernoulli(0.5): standard error 0.025
    lo, hi = bootstrap_ci(values, 2000, seed=0)
    assert float(lo) < 0.5 < float(hi)
    # a statistical tolerance, not a rounding one: the interval's ends are quantiles of 2000 seeded draws
    assert float(hi - lo) == pytest.approx(2 * 1.96 * 0.025, rel=0.1)


def test_seeded_and_chunked_the_same_way() -> None:
    values = torch.rand(50, 3, generator=torch.Generator().manual_seed(1)).double()
    a = resampled_means(values, 300, seed=7)
    assert torch.equal(a, resampled_means(values, 300, seed=7))
    assert not torch.equal(a, resampled_means(values, 300, seed=8))
    assert a.shape == (300, 3)
    # centred on the sample mean: 300 means of values in [0, 1), standard error < 0.3 / sqrt(50 * 300) = 0.0025
    assert float((a.mean(0) - values.mean(0)).abs().max()) < 0.02


def test_kept_draws_give_the_fresh_draws_means(monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeated evaluation reuses the drawn counts; the means are those of drawing them again."""
    values = torch.rand(40, 2, generator=torch.Generator().manual_seed(2)).double()
    gen = torch.Generator().manual_seed(5)
    draws = torch.randint(40, (30, 40), generator=gen)  # [S, U] the documented scheme, drawn here
    counts = torch.stack([torch.bincount(row, minlength=40) for row in draws])  # [S, U]
    expected = counts.double() @ values / 40  # [S, M]
    bootstrap._kept_counts.cache_clear()
    first = resampled_means(values, 30, seed=5)
    again = resampled_means(values * 2, 30, seed=5)  # other values, same users and seed: the kept counts
    assert bootstrap._kept_counts.cache_info().hits == 1
    rtol = sum_tol(torch.float64, 40 + 1)  # float64 sums of 40 non-negative terms (in any blocking), then / 40
    assert_close(first, expected, rtol=rtol)
    assert_close(again, 2 * expected, rtol=rtol)
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 40 * 7)  # chunks of 7 samples: drawn fresh each time
    chunked = resampled_means(values, 30, seed=5)
    assert chunked.shape == (30, 2)
    assert_close(chunked, expected, rtol=rtol)  # one generator: the same draws, in chunks
    assert bootstrap._kept_counts.cache_info().hits == 1  # chunked draws are not kept


def test_paired_pvalue_no_difference_and_a_clear_one() -> None:
    n = 999
    same = torch.zeros(200, 1, dtype=torch.float64)
    assert float(paired_bootstrap_pvalue(same, n, seed=0)) == 1.0
    gen = torch.Generator().manual_seed(0)
    shifted = 0.3 + 0.5 * torch.randn(200, 1, generator=gen, dtype=torch.float64)  # mean / SE ~ 8.5
    assert float(paired_bootstrap_pvalue(shifted, n, seed=0)) == pytest.approx(1 / (n + 1))
    noise = torch.randn(200, 1, generator=gen, dtype=torch.float64)
    noise -= noise.mean()
    assert float(paired_bootstrap_pvalue(noise + 1e-4, n, seed=0)) > 0.5
