"""Tolerances of the numerical tests, derived from the dtype and the number of operations, never from one machine.

Two correct computations of the same value round differently on different CPUs: AVX2 sums 8 float32 lanes at a
time and AVX-512 16, oneDNN and MKL pick their kernels (and their blocking) by instruction set, FMA fuses a
product into a sum, torch.compile fuses and reorders kernels. Each operation rounds with a relative error of at
most ``u = eps / 2``, so a result built from ``n`` roundings is off by:

- ``tol(dtype, n)`` = ``C * eps * sqrt(n)``: errors of either sign add up like a random walk (element-wise
  chains, a dot product or a softmax evaluated in another order). ``C = 4`` leaves a margin for two
  implementations that each err, for the largest of many compared elements and for mild amplification
  (a layer norm's division, a softmax's exponent).
- ``sum_tol(dtype, n)`` = ``n * eps``: the worst case of a sum of ``n`` terms in any order, relative to the sum of
  their magnitudes (Higham's bound ``gamma_(n-1) = (n - 1) u / (1 - (n - 1) u)``, with a factor 2 to spare);
  for sums that cancel, or results compared with one exact value, where a random walk is not enough.

An element that cancels to near zero carries the absolute error of the terms that made it, so a tensor is
compared with ``atol = rtol * max |expected|`` (its own scale) unless told otherwise: see :func:`assert_close`.
Integer and index outputs (ranks, top-k ids, counts) are compared exactly, never through these; so are two runs
of the same operations on the same inputs (deterministic on any CPU). ``pytest.approx``'s default (``rel=1e-6``,
about ``tol(float32, 4)``) is kept for values a rounding or two of float32 from exact, and statistical bounds
(seeded draws) say so where they stand. ``make test-cpu-kinds`` reruns these tests as other CPUs round.
"""

from __future__ import annotations

import math

import torch

C = 4.0
"""The margin of :func:`tol` over one standard random walk of roundings."""


def eps(dtype: torch.dtype) -> float:
    """The machine epsilon of ``dtype`` (the gap between 1 and the next number): 1.19e-7 for float32."""
    return torch.finfo(dtype).eps


def tol(dtype: torch.dtype, n_ops: int = 1) -> float:
    """Relative tolerance of a result of ``n_ops`` roundings in ``dtype`` whose errors add up randomly."""
    return C * eps(dtype) * math.sqrt(max(n_ops, 1))


def sum_tol(dtype: torch.dtype, n_terms: int) -> float:
    """Relative tolerance (to the sum of the magnitudes) of a sum of ``n_terms`` terms in ``dtype``, worst case."""
    return eps(dtype) * max(n_terms, 1)


def score_mass(hidden: torch.Tensor, items: torch.Tensor) -> float:
    """The largest sum of term magnitudes ``sum_d |h_d w_d|`` of the scores ``hidden @ items.T``."""
    return float((hidden.detach().abs().float() @ items.detach().abs().float().T).max())


def softmax_tol(dtype: torch.dtype, hidden: torch.Tensor, items: torch.Tensor) -> float:
    """Relative tolerance of a softmax over the scores ``hidden @ items.T`` and of a cross-entropy's gradients.

    ``exp`` turns each score's absolute error (a dot product of ``D`` terms: ``tol(dtype, D)`` times their
    magnitudes, :func:`score_mass`) into a relative error of its probability; the normalising sum over the
    ``V`` items adds ``tol(dtype, V)``.
    """
    return tol(dtype, hidden.shape[-1]) * score_mass(hidden, items) + tol(dtype, items.shape[0])


def cross_entropy_atol(dtype: torch.dtype, hidden: torch.Tensor, items: torch.Tensor, loss: float) -> float:
    """Absolute tolerance of a cross-entropy ``mean_n(logsumexp_v(s_nv) - s_n,target)`` over ``hidden @ items.T``.

    Each row errs by its target score's and its log-sum-exp's absolute errors (the scores': see
    :func:`softmax_tol`; the sum of ``V`` exponentials' relative error becomes the log's absolute one); the
    mean over ``N`` rows adds ``tol(dtype, N)`` of the loss.
    """
    rows = hidden.reshape(-1, hidden.shape[-1]).shape[0]
    return 2 * softmax_tol(dtype, hidden, items) + tol(dtype, rows) * abs(loss)


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, *, rtol: float, atol: float | None = None, what: str = ""
) -> None:
    """``torch.testing.assert_close`` whose failure names ``what`` and still prints the size of the difference.

    Args:
        actual: the tensor under test.
        expected: the reference tensor.
        rtol: the relative tolerance, from :func:`tol` or :func:`sum_tol`.
        atol: the absolute tolerance; default ``rtol * max |expected|``, the rounding error of the tensor's
            largest terms, which an element that cancels to near zero still carries.
        what: what is compared (a parameter's name), put in front of the default message.
    """
    if atol is None:
        finite = expected.detach()[expected.isfinite()]  # a -inf score (padding) has no scale
        atol = rtol * float(finite.abs().max()) if finite.numel() else 0.0
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=atol, msg=lambda default: f"{what}: {default}" if what else default
    )
