"""Beyond-accuracy metrics against a hand-computed toy case."""

from __future__ import annotations

import math

import pytest
import torch

from recsys_attn.evaluation.beyond import BeyondAccuracy, gini, self_information
from tests.tolerances import tol

# n_items = 4; training counts of items 1..4 (index 0 = PAD): total 7, add-one shares (c + 1) / 11.
POP = torch.tensor([0.0, 4.0, 2.0, 1.0, 0.0])
TOP = torch.tensor([[1, 2], [1, 3]])  # two users' ranked lists
TARGETS = torch.tensor([3, 4])  # popularity 1 and 0
OUT_TOL = tol(torch.float32, 1)
"""The metrics are summed in float64 and handed over as float32: one float32 rounding of the exact value (the
small fractions below are exact in float32, where pytest.approx's default, about 8 eps(float32), is kept)."""


def info(count: float) -> float:
    return -math.log2((count + 1.0) / 11.0)


def test_every_metric_on_a_hand_computed_case() -> None:
    metric = BeyondAccuracy([1, 2], n_items=4)
    metric.update(TOP, TARGETS, POP)
    out = {k: float(v) for k, v in metric.compute().items()}
    assert out["target_popularity"] == pytest.approx(0.5)
    # K=1: both users see item 1 only.
    assert out["coverage@1"] == pytest.approx(1 / 4)
    assert out["gini@1"] == pytest.approx(3 / 4)  # all exposure on one of 4 items: (n - 1) / n
    assert out["arp@1"] == pytest.approx(4.0)
    assert out["arp_ratio@1"] == pytest.approx(8.0)
    assert out["novelty@1"] == pytest.approx(info(4.0))
    # K=2: exposure [2, 1, 1, 0] -> sorted [0, 1, 1, 2]: (-3*0 - 1*1 + 1*1 + 3*2) / (4 * 4) = 0.375
    assert out["coverage@2"] == pytest.approx(3 / 4)
    assert out["gini@2"] == pytest.approx(0.375)
    assert out["arp@2"] == pytest.approx(((4 + 2) / 2 + (4 + 1) / 2) / 2)
    assert out["arp_ratio@2"] == pytest.approx(2.75 / 0.5)
    novelty = ((info(4) + info(2)) / 2 + (info(4) + info(1)) / 2) / 2
    assert out["novelty@2"] == pytest.approx(novelty, rel=OUT_TOL)


def test_padding_in_a_short_list_is_not_an_item() -> None:
    metric = BeyondAccuracy([2], n_items=4)
    metric.update(torch.tensor([[2, 0]]), torch.tensor([1]), POP)  # one rankable item only
    out = metric.compute()
    assert float(out["coverage@2"]) == pytest.approx(1 / 4)
    assert float(out["arp@2"]) == pytest.approx(2.0)  # the mean over the real item, not (2 + 0) / 2
    assert float(out["novelty@2"]) == pytest.approx(info(2.0), rel=OUT_TOL)


def test_states_split_over_devices_merge_to_the_same_values() -> None:
    whole = BeyondAccuracy([1, 2], n_items=4)
    whole.update(TOP, TARGETS, POP)
    a, b = BeyondAccuracy([1, 2], n_items=4), BeyondAccuracy([1, 2], n_items=4)
    a.update(TOP[:1], TARGETS[:1], POP)
    b.update(TOP[1:], TARGETS[1:], POP)
    a.merge_state(b)  # what the sum reduction across devices does
    expected, merged = whole.compute(), a.compute()
    for name, value in expected.items():
        assert float(merged[name]) == pytest.approx(float(value)), name


def test_gini_extremes_and_self_information() -> None:
    assert float(gini(torch.tensor([5.0, 5.0, 5.0]))) == pytest.approx(0.0)
    assert float(gini(torch.tensor([0.0, 0.0, 0.0, 0.0, 9.0]))) == pytest.approx(4 / 5)
    assert float(gini(torch.zeros(3))) == 0.0
    bits = self_information(POP)
    rel = tol(torch.float64, 3)  # float64: a sum, a ratio and a log2
    assert float(bits[1]) == pytest.approx(info(4.0), rel=rel) and float(bits[4]) == pytest.approx(info(0.0), rel=rel)
