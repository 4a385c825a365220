"""The tolerance helpers of the numerical tests: their sizes and what a failure prints."""

from __future__ import annotations

import math

import pytest
import torch

from tests.tolerances import assert_close, cross_entropy_atol, eps, softmax_tol, sum_tol, tol


def test_tolerances_grow_with_the_operations_and_follow_the_dtype() -> None:
    assert eps(torch.float32) == pytest.approx(2**-23) and eps(torch.float64) == pytest.approx(2**-52)
    assert tol(torch.float32, 400) == pytest.approx(20 * tol(torch.float32, 1))  # a random walk: sqrt(n)
    assert sum_tol(torch.float32, 400) == pytest.approx(400 * sum_tol(torch.float32, 1))  # worst case: n
    assert tol(torch.float64, 9) / tol(torch.float32, 9) == pytest.approx(2**-29)
    assert tol(torch.float32, 0) == tol(torch.float32, 1)  # never below one rounding


def test_softmax_tolerance_is_the_scores_absolute_error_plus_the_sum() -> None:
    hidden, items = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 1.0], [0.0, 0.5], [-1.0, 1.0]])
    # the largest sum of |h_d w_d|: item 0, 3 + 2 = 5; 2 terms per score, 3 items in the sum
    assert softmax_tol(torch.float32, hidden, items) == pytest.approx(5 * tol(torch.float32, 2) + tol(torch.float32, 3))
    rows = tol(torch.float32, 1)  # one row in the mean
    expected = 2 * softmax_tol(torch.float32, hidden, items) + rows * 7.0
    assert cross_entropy_atol(torch.float32, hidden, items, -7.0) == pytest.approx(expected)


def test_a_failure_names_what_and_prints_the_size_of_the_difference() -> None:
    expected = torch.tensor([1.0, 2.0, 3.0])
    with pytest.raises(AssertionError, match=r"(?s)^encoder\.weight: .*Greatest absolute difference: 0\.5"):
        assert_close(expected + torch.tensor([0.0, 0.5, 0.0]), expected, rtol=1e-6, what="encoder.weight")
    with pytest.raises(AssertionError, match=r"^Tensor-likes are not close"):  # without a name: torch's message
        assert_close(expected + 0.5, expected, rtol=1e-6)


def test_the_default_absolute_tolerance_is_relative_to_the_largest_finite_element() -> None:
    """An element that cancels to near zero carries the rounding of the tensor's large terms."""
    expected = torch.tensor([1000.0, 0.0, -math.inf])
    assert_close(torch.tensor([1000.0, 9e-3, -math.inf]), expected, rtol=1e-5)  # atol = 1e-5 * 1000
    with pytest.raises(AssertionError, match=r"Greatest absolute difference: 0\.01.* \(up to 0\.01 allowed\)"):
        assert_close(torch.tensor([1000.0, 1.1e-2, -math.inf]), expected, rtol=1e-5)
    assert_close(torch.zeros(0), torch.zeros(0), rtol=1e-5)  # nothing to compare: no scale needed
