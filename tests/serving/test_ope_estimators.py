"""Off-policy estimators on a simulated world whose true values are known exactly."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
import torch
from torch import Tensor

from recsys_attn.serving.ope_estimators import (
    LoggedSlates,
    RewardModel,
    TargetSlots,
    diagnostics,
    estimate,
    fit_reward_model,
    per_user_columns,
    served_ctr,
    slot_weights,
)
from recsys_attn.serving.policies import Epsilon, Greedy, Policy, Temperature
from tests.tolerances import tol

INF = float("inf")
K = 3
# Two kinds of users (rows); column 0 is padding, item 5 is in the first kind's history.
LOG_SCORES = torch.tensor([[-INF, 2.0, 1.0, 0.5, 0.0, -INF, -0.5], [-INF, 0.0, 0.5, 2.0, 1.0, 1.5, -1.0]])  # [2, 7]
TARGET_SCORES = torch.tensor([[-INF, -1.0, 0.5, 1.0, 2.0, -INF, 1.5], [-INF, 1.5, 0.0, -0.5, 1.0, 0.5, 2.0]])
# Position-based clicks: P(click | item a at rank r) = THETA[a] * KAPPA[r]
THETA = torch.tensor([0.0, 0.5, 0.3, 0.1, 0.6, 0.2, 0.4])  # [7]
KAPPA = torch.tensor([1.0, 0.6, 0.3])  # [K]
COLDEST = 0.7
"""The lowest temperature of the policies here."""


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def true_value(policy: Policy, scores: Tensor) -> float:
    """Σ over every ordered slate of P_policy(slate) · Σ_r θ κ_r, averaged over the kinds of users (exact)."""
    total = 0.0
    for row in scores:
        servable = [a for a in range(row.numel()) if row[a] > -INF]
        slates = torch.tensor(list(itertools.permutations(servable, K)))  # [P, K]
        prob = policy.propensities(row.expand(len(slates), -1), slates).double().prod(1)  # [P]
        # K float32 propensities per slate, each a softmax of scores / T over the row: an exponent's rounding (up
        # to max |score| / T) is a relative error of its probability; products of K summed to 1 in float64
        prop_tol = tol(torch.float32, row.numel()) * (1 + float(row[row > -INF].abs().max()) / COLDEST)
        assert float(prob.sum()) == pytest.approx(1.0, abs=K * prop_tol)
        total += float((prob * (THETA[slates] * KAPPA).double().sum(1)).sum())
    return total / scores.shape[0]


def simulate(logging: Policy, log_scores: Tensor, n: int, seed: int) -> tuple[LoggedSlates, Tensor]:
    """``n`` slates served by ``logging`` (users alternate between the two kinds), clicks drawn; and the kinds."""
    kind = torch.arange(n) % 2  # [n]
    items, mu = logging.draw(log_scores[kind], K, gen(seed))  # [n, K]
    clicks = torch.bernoulli(THETA[items] * KAPPA, generator=gen(seed + 1))  # [n, K]
    shown = items != 0
    return LoggedSlates(torch.arange(1, n + 1), items, torch.where(shown, mu, 1.0), clicks, shown), kind


def target_slots(policy: Policy, slates: LoggedSlates, kind: Tensor, model: RewardModel) -> TargetSlots:
    scores = TARGET_SCORES[kind]  # [n, V]
    expected = policy.expected(scores, slates.items, model.item_rate) * model.rank_factor  # [n, K]
    return TargetSlots(policy.propensities(scores, slates.items), expected, model.predict(slates.items))


# (logging policy, the scores it served from, target policy over TARGET_SCORES): another model explored,
# the target model explored (evaluating its greedy slate), another model explored by temperature
CASES = [
    (Epsilon(0.5), LOG_SCORES, Temperature(0.7)),
    (Temperature(1.0), TARGET_SCORES, Greedy()),
    (Temperature(3.0), LOG_SCORES, Epsilon(0.2)),
]


@pytest.mark.parametrize(("logging", "log_scores", "target"), CASES, ids=["eps-temp", "temp-greedy", "temp-eps"])
def test_intervals_cover_the_true_value_of_the_target(logging: Policy, log_scores: Tensor, target: Policy) -> None:
    """One large log: the 99.9% intervals hold the exact value of the target (and of the logging policy)."""
    slates, kind = simulate(logging, log_scores, 20_000, seed=0)
    model = fit_reward_model(slates, THETA.numel())
    est = estimate(slates, target_slots(target, slates, kind, model), n_samples=4000, seed=0, level=0.999)
    truth, logged_truth = true_value(target, TARGET_SCORES), true_value(logging, log_scores)
    assert est["logged"].lo <= logged_truth <= est["logged"].hi
    for name in ("ips", "snips", "dr"):
        e = est[name]
        assert e.lo <= e.value <= e.hi, name
        assert e.lo <= truth <= e.hi, (name, e, truth)
        assert e.hi - e.lo < 0.5, (name, e)  # informative: the world's values lie in [0, 1.9]
        assert not e.lo <= logged_truth <= e.hi  # the policies differ more than the intervals can blur


def test_estimates_average_to_the_true_value_over_many_logs() -> None:
    """200 independent logs of 1,000 slates: IPS and DR are unbiased, and the 95% intervals cover ~95%."""
    logging, target, n, reps = Epsilon(0.5), Temperature(0.7), 1000, 200
    truth = true_value(target, TARGET_SCORES)
    slates, kind = simulate(logging, LOG_SCORES, n * reps, seed=10)
    values: dict[str, list[float]] = {"ips": [], "snips": [], "dr": []}
    covered = dict.fromkeys(values, 0)
    for rep in range(reps):
        part = LoggedSlates(*(t[rep * n : (rep + 1) * n] for t in slates))
        kinds = kind[rep * n : (rep + 1) * n]
        model = fit_reward_model(part, THETA.numel())
        est = estimate(part, target_slots(target, part, kinds, model), n_samples=300, seed=rep)
        for name in values:
            values[name].append(est[name].value)
            covered[name] += est[name].lo <= truth <= est[name].hi
    for name in ("ips", "dr"):
        v = torch.tensor(values[name], dtype=torch.float64)
        se = float(v.std()) / reps**0.5
        assert abs(float(v.mean()) - truth) < 4 * se, (name, float(v.mean()), truth, se)
    for name, hits in covered.items():
        assert 0.85 <= hits / reps <= 1.0, (name, hits)


def test_doubly_robust_stays_unbiased_with_a_wrong_reward_model() -> None:
    logging, target = Epsilon(0.5), Temperature(0.7)
    slates, kind = simulate(logging, LOG_SCORES, 20_000, seed=3)
    wrong = RewardModel(torch.full_like(THETA, 0.9), torch.ones(K))  # far from every item's true rate
    est = estimate(slates, target_slots(target, slates, kind, wrong), n_samples=1000, seed=1)
    truth = true_value(target, TARGET_SCORES)
    assert est["dr"].lo <= truth <= est["dr"].hi, (est["dr"], truth)
    direct = float(target_slots(target, slates, kind, wrong).expected_reward.sum(1).mean())  # ~ DM alone
    assert abs(direct - truth) > 5 * (est["dr"].hi - est["dr"].lo)  # the model alone is far off


def test_prefix_weights_and_estimates_by_hand() -> None:
    # slate 0 shows 2 items, slate 1 shows 3
    slates = LoggedSlates(
        users=torch.tensor([1, 2]),
        items=torch.tensor([[1, 2, 0], [3, 1, 2]]),
        propensity=torch.tensor([[0.5, 0.25, 1.0], [0.5, 0.5, 1.0]]),
        reward=torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]),
        shown=torch.tensor([[True, True, False], [True, True, True]]),
    )
    target = TargetSlots(
        propensity=torch.tensor([[1.0, 0.5, 0.0], [0.25, 1.0, 0.5]]),
        expected_reward=torch.tensor([[0.2, 0.1, 0.0], [0.2, 0.3, 0.4]]),
        predicted_reward=torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.3]]),
    )
    w = slot_weights(slates, target)
    torch.testing.assert_close(w, torch.tensor([[2.0, 4.0, 0.0], [0.5, 1.0, 0.5]], dtype=torch.float64))
    columns = per_user_columns(slates, target)
    assert columns[:, 0].tolist() == [2.0, 2.0]  # logged reward
    assert columns[:, 1].tolist() == [6.0, 1.5]  # Σ W y
    # DR slot terms: W (y - q) + W_above E_π[q]: slate 0: 2·0.5 + 0.2, 4·0.5 + 2·0.1; slate 1: ...
    dr0 = (2 * 0.5 + 1 * 0.2) + (4 * 0.5 + 2 * 0.1)
    dr1 = (0.5 * -0.1 + 0.2) + (1.0 * 0.8 + 0.5 * 0.3) + (0.5 * 0.7 + 1.0 * 0.4)
    torch.testing.assert_close(columns[:, 2], torch.tensor([dr0, dr1], dtype=torch.float64))
    est = estimate(slates, target, n_samples=50, seed=0)
    assert est["ips"].value == pytest.approx(3.75)
    # SNIPS: rank 0: (2·1 + 0.5·0)/(2.5) = 0.8; rank 1: (4 + 1)/5 = 1; rank 2 (one slate of two): 0.5/0.5 = 1
    assert est["snips"].value == pytest.approx(0.8 + 1.0 + 0.5 * 1.0)
    assert est["logged"].value == pytest.approx(2.0)
    assert est["dr"].value == pytest.approx((dr0 + dr1) / 2)
    diag = diagnostics(slates, target)
    assert diag["target_support"] == pytest.approx(1.0) and diag["mean_weight_by_rank"] == [1.25, 2.5, 0.5]


def test_reward_model_and_served_ctr_by_hand() -> None:
    slates = LoggedSlates(
        users=torch.tensor([1, 2]),
        items=torch.tensor([[1, 2], [2, 1]]),
        propensity=torch.ones(2, 2),
        reward=torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
        shown=torch.ones(2, 2, dtype=torch.bool),
    )
    model = fit_reward_model(slates, 4, prior=0.0)
    # ȳ = 3/4, rank means 1 and 1/2 -> κ = (4/3, 2/3); item 1: 2 clicks over κ0 + κ1 = 2 -> θ = 1
    torch.testing.assert_close(model.rank_factor, torch.tensor([4 / 3, 2 / 3]))
    torch.testing.assert_close(model.item_rate[1:3], torch.tensor([1.0, 0.5]))
    assert torch.isnan(model.item_rate[3])  # prior 0 and never served: no information
    assert float(fit_reward_model(slates, 4).item_rate[3]) == pytest.approx(0.75)  # the prior's mean
    log = pl.DataFrame({"item_id": ["a", "b", "b", "a"], "rank": [0, 1, 0, 1], "reward": [1, 0, 1, 1]})
    ctr = served_ctr(log, model.rank_factor)
    assert ctr.columns == ["item_id", "impressions", "clicks", "ctr", "ctr_rank_adjusted"]
    rows = {r["item_id"]: r for r in ctr.iter_rows(named=True)}
    assert (
        rows["a"]["impressions"] == 2
        and rows["a"]["ctr"] == 1.0
        and rows["a"]["ctr_rank_adjusted"] == pytest.approx(1.0)
    )
    assert rows["b"]["ctr"] == 0.5 and rows["b"]["ctr_rank_adjusted"] == pytest.approx(1 / (2 / 3 + 4 / 3))
