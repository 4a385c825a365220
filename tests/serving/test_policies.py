"""Exploration policies: drawn slates follow the logged propensities, seeds repeat, greedy is the limit."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

from recsys_attn.errors import ConfigError
from recsys_attn.serving.policies import Epsilon, Greedy, Policy, Temperature, make_policy
from tests.tolerances import assert_close, sum_tol, tol

INF = float("inf")
# A 6-item catalogue (column 0 = padding); item 5 is in the user's history.
SCORES = torch.tensor([[-INF, 2.0, 1.5, 0.3, -0.4, -INF, 0.9]])  # [1, 7]
SERVABLE = [1, 2, 3, 4, 6]
POLICIES = [Greedy(), Temperature(0.7), Temperature(3.0), Epsilon(0.3), Epsilon(1.0)]


COLDEST = 0.7
"""The lowest temperature among ``POLICIES``."""


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def prop_tol(scores: torch.Tensor) -> float:
    """Absolute tolerance of a float32 propensity (<= 1): a softmax of ``scores / T`` over their columns.

    The rounding of each exponent, up to ``max |score| / T``, becomes a relative error of its probability;
    the normalising sum over the columns adds its own.
    """
    finite = scores[scores.isfinite()]
    return tol(torch.float32, scores.shape[-1]) * (1 + float(finite.abs().max()) / COLDEST)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}{p.params()}")
def test_empirical_frequencies_match_propensities(policy: Policy) -> None:
    """Per rank, given the items above, each item is drawn as often as its propensity says (20k draws)."""
    n, k = 20_000, 3
    items, props = policy.draw(SCORES.expand(n, -1), k, gen(0))  # [n, k]
    assert items.shape == props.shape == (n, k)
    above: Counter[tuple[int, ...]] = Counter()
    hits: Counter[tuple[int, ...]] = Counter()
    claimed: dict[tuple[int, ...], float] = {}
    for row, prow in zip(items.tolist(), props.tolist(), strict=True):
        for r in range(k):
            above[tuple(row[:r])] += 1
            hits[tuple(row[: r + 1])] += 1
            prev = claimed.setdefault(tuple(row[: r + 1]), prow[r])
            assert prev == pytest.approx(prow[r], abs=prop_tol(SCORES))  # the same prefix, the same propensity
    checked = 0
    for prefix, count in above.items():
        if count < 200:
            continue
        for item in SERVABLE:
            if item in prefix:
                continue
            p = claimed.get((*prefix, item))
            if p is None:  # never drawn: its probability must be tiny or 0
                p = float(policy.propensities(SCORES, torch.tensor([[*prefix, item]]))[0, -1])
                assert p * count < 5, (prefix, item, p, count)
                continue
            freq = hits[(*prefix, item)] / count
            se = math.sqrt(max(p * (1 - p), 1e-4) / count)
            assert abs(freq - p) < 4.5 * se, (prefix, item, freq, p, count)
            checked += 1
    assert checked >= (3 if isinstance(policy, Greedy) else 20)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}{p.params()}")
def test_ordered_slate_probabilities_sum_to_one(policy: Policy) -> None:
    """Every ordered slate of 3 servable items, its propensities multiplied: a distribution (sums to 1)."""
    slates = torch.tensor(list(itertools.permutations(SERVABLE, 3)))  # [60, 3]
    props = policy.propensities(SCORES.expand(len(slates), -1), slates)  # [60, 3]
    # products of 3 propensities (3 relative errors each), summed over 60 slates to 1
    assert float(props.prod(1).sum()) == pytest.approx(1.0, abs=3 * prop_tol(SCORES) + sum_tol(torch.float32, 60))


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}{p.params()}")
def test_propensities_of_a_drawn_slate_are_its_logged_ones(policy: Policy) -> None:
    scores = torch.randn(64, 40, generator=gen(1))  # [64, 40]
    scores[:, 0] = -INF
    scores[torch.rand(64, 40, generator=gen(2)) < 0.3] = -INF  # histories
    items, props = policy.draw(scores, 8, gen(3))  # [64, 8]
    assert props.dtype == torch.float32
    assert_close(policy.propensities(scores, items), props, rtol=prop_tol(scores), what="propensities")
    assert bool((props > 0).all()) and bool((props <= 1).all())


@pytest.mark.parametrize("policy", POLICIES[1:], ids=lambda p: f"{p.name}{p.params()}")
def test_a_seed_repeats_the_draw_and_another_seed_changes_it(policy: Policy) -> None:
    scores = torch.randn(32, 100, generator=gen(4))  # [32, 100]
    first = policy.draw(scores, 10, gen(5))
    again = policy.draw(scores, 10, gen(5))
    other = policy.draw(scores, 10, gen(6))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_greedy_is_the_top_k_with_ties_to_the_lower_index() -> None:
    scores = torch.tensor([[-INF, 1.0, 2.0, 5.0, 2.0, 2.0, 0.0]])  # [1, 7]; three items tie at 2.0
    items, props = Greedy().draw(scores, 3, None)
    assert items.tolist() == [[3, 2, 4]]
    assert props.tolist() == [[1.0, 1.0, 1.0]]
    # given the slate above, the best item left is the greedy one; any other gets 0
    slates = torch.tensor([[3, 2, 4], [3, 4, 2], [3, 5, 2], [2, 3, 4]])  # [4, 3]
    got = Greedy().propensities(scores.expand(4, -1), slates)
    assert got.tolist() == [[1, 1, 1], [1, 0, 1], [1, 0, 1], [0, 1, 1]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_temperature_towards_zero_gives_the_greedy_slate(dtype: torch.dtype) -> None:
    g = gen(7)
    scores = torch.stack([torch.randperm(100, generator=g) for _ in range(5)]).to(dtype) / 8  # [5, 100] distinct
    scores[:, 0] = -INF
    greedy_items, _ = Greedy().draw(scores, 20, None)
    items, props = Temperature(1e-6).draw(scores, 20, gen(8))
    assert torch.equal(items, greedy_items)
    assert props.dtype == torch.float32 and not bool(props.isnan().any())
    torch.testing.assert_close(props, torch.ones_like(props))
    warm_items, _ = Temperature(100.0).draw(scores, 20, gen(8))
    assert not torch.equal(warm_items, greedy_items)  # the test can tell a draw from the top-k


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}{p.params()}")
def test_fewer_servable_items_than_k_fill_with_padding(policy: Policy) -> None:
    scores = torch.tensor([[-INF, 1.0, -INF, 0.5, -INF], [-INF] * 5])  # [2, 5]: 2 servable, then none
    items, props = policy.draw(scores, 7, gen(9))  # k > V too
    assert items.shape == props.shape == (2, 7)
    assert sorted(items[0, :2].tolist()) == [1, 3]
    assert items[0, 2:].eq(0).all() and props[0, 2:].eq(0).all() and bool((props[0, :2] > 0).all())
    assert items[1].eq(0).all() and props[1].eq(0).all()
    assert props[0, 1] == 1.0  # the last servable item is certain


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}{p.params()}")
def test_history_and_padding_are_never_drawn(policy: Policy) -> None:
    scores = torch.randn(2000, 12, generator=gen(10)) * 3  # [2000, 12]
    scores[:, [0, 4, 7]] = -INF
    scores[:, 4] = -INF
    items, props = policy.draw(scores, 9, gen(11))
    assert not bool(torch.isin(items, torch.tensor([0, 4, 7])).any())
    assert bool((props > 0).all())


def test_unservable_and_repeated_slate_items_have_propensity_zero() -> None:
    slate = torch.tensor([[1, 5, 1, 0]])  # item 5 is in the history, 1 repeats, 0 is padding
    for policy in POLICIES:
        props = policy.propensities(SCORES, slate)
        assert props[0, 1:].eq(0).all(), policy
        assert float(props[0, 0]) > 0


def test_make_policy_builds_each_policy_and_names_the_bad_key() -> None:
    assert make_policy("greedy") == Greedy()
    assert make_policy("temperature", temperature=0.5) == Temperature(0.5)
    assert make_policy("epsilon", epsilon=1) == Epsilon(1.0)
    assert Temperature(0.5).params() == {"temperature": 0.5} and Greedy().params() == {}
    assert Epsilon(0.2).name == "epsilon"
    bad = [
        (dict(name="softmax"), "policy: 'softmax' is not one of greedy, temperature, epsilon"),
        (dict(name="temperature"), "temperature: policy=temperature needs it"),
        (dict(name="temperature", temperature=0.0), "temperature: must be > 0"),
        (dict(name="temperature", temperature=math.inf), "temperature: expected a finite number"),
        (dict(name="epsilon", epsilon=1.5), r"epsilon: must be in \[0, 1\]"),
        (dict(name="epsilon", epsilon=True), "epsilon: expected a finite number"),
        (dict(name="greedy", epsilon=0.1), "epsilon: only policy=epsilon reads it, not policy=greedy"),
        (dict(name="epsilon", epsilon=0.1, temperature=1.0), "temperature: only policy=temperature reads it"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ConfigError, match=message):
            make_policy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.name}{p.params()}")
def test_expected_values_are_the_propensity_weighted_means_over_every_next_item(policy: Policy) -> None:
    """E[values | the items above] at each rank = sum over candidate items a of P(a next) * values[a]."""
    scores = torch.randn(50, 8, generator=gen(12))  # [50, 8]
    scores[:, 0] = -INF
    scores[torch.rand(50, 8, generator=gen(13)) < 0.25] = -INF
    values = torch.randn(8, generator=gen(14))  # [8]
    slate, _ = Temperature(2.0).draw(scores, 4, gen(15))  # [50, 4] a slate the target did not choose
    got = policy.expected(scores, slate, values)  # [50, 4]
    want = torch.zeros(50, 4)
    for r in range(4):
        for a in range(8):
            candidate = torch.cat([slate[:, :r], torch.full((50, 1), a)], dim=1)  # [50, r + 1]
            want[:, r] += policy.propensities(scores, candidate)[:, r] * values[a]
    # sums of 8 propensity-weighted values, in another order: the propensities' errors and the sum's
    rtol = prop_tol(scores) + sum_tol(torch.float32, 8)
    assert_close(got, want, rtol=rtol, atol=rtol * float(values.abs().max()), what="expected values")
