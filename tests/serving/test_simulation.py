"""The simulated feedback loop: logs grow as users take items, the cascade's probabilities are exact, a round
serves only what may be served, and the loop reports what it served and estimated, seeded."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from recsys_attn.constants import PAD
from recsys_attn.data.batches import EvalSplit, trim_left
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.models.sasrec import SASRec
from recsys_attn.serving.click_model import ClickModel, dcg_position_bias, mean_and_error, slate_values
from recsys_attn.serving.loop_log import Log, clone, log_datamodule, ope_users, split_log
from recsys_attn.serving.policies import Epsilon, Greedy, Policy, Temperature
from recsys_attn.serving.simulation import (
    LoopSettings,
    batch_rows,
    blocked,
    exposure,
    heldout_batch,
    run_loop,
    serving_scores,
)
from tests.conftest import toy_datamodule
from tests.tolerances import assert_close, tol

N_USERS, N_ITEMS, PER_USER = 24, 15, 8
# user u takes items (u + 2j) % 15 + 1, j = 0..7: distinct within a user, every item used
LINES = [f"{u} {(u + 2 * j) % N_ITEMS + 1}" for u in range(1, N_USERS + 1) for j in range(PER_USER)]
TINY = {"hidden_size": 8, "num_blocks": 1, "max_len": 10, "dropout": 0.0, "lr": 1e-2}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def base(tmp_path: Path) -> SeqDataModule:
    return toy_datamodule(tmp_path, LINES)


def test_append_puts_each_users_item_after_their_last() -> None:
    log = Log(torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([2, 3, 1]))
    grown = log.append(torch.tensor([7, PAD, 8]))
    assert grown.values.tolist() == [1, 2, 7, 3, 4, 5, 6, 8]
    assert grown.lengths.tolist() == [3, 3, 2]
    assert grown.starts.tolist() == [0, 3, 6]
    with pytest.raises(ValueError, match="one item per user"):
        log.append(torch.tensor([7, 8]))


def test_split_log_keeps_the_first_share_and_holds_out_the_last_item(base: SeqDataModule) -> None:
    start, last = split_log(base.splits, 0.5)
    full = base.splits.full
    assert start.lengths.tolist() == [PER_USER // 2] * N_USERS
    for u in (0, 5, N_USERS - 1):
        real = base.splits.values[full.starts[u] : full.ends[u]].tolist()
        mine = start.values[start.starts[u] : start.starts[u] + start.lengths[u]].tolist()
        assert mine == real[: PER_USER // 2] and int(last[u]) == real[-1]
    short, _ = split_log(base.splits, 0.01)  # at least two items, never the last one
    assert short.lengths.tolist() == [2] * N_USERS
    with pytest.raises(ValueError, match="share"):
        split_log(base.splits, 1.0)


def test_ope_users_are_a_seeded_share() -> None:
    chosen = ope_users(100, 0.25, seed=3)
    assert int(chosen.sum()) == 25
    assert torch.equal(chosen, ope_users(100, 0.25, seed=3)) and not torch.equal(chosen, ope_users(100, 0.25, 4))


def test_the_log_datamodule_trains_only_on_the_trained_users_and_tests_every_user(base: SeqDataModule) -> None:
    start, last = split_log(base.splits, 0.5)
    trained = torch.arange(N_USERS) % 4 != 0  # users 1, 5, 9, ... held out
    dm = log_datamodule(base, start, last, trained)
    model = SASRec(base.n_items, **TINY)
    batch = heldout_batch(model, dm)
    assert dm.store.windows.shape[0] == int(trained.sum())  # one training window per trained user
    trained_items = set(dm.store.windows[dm.store.windows != PAD].tolist())
    assert trained_items <= set(start.values.tolist())
    assert batch.users.tolist() == list(range(1, N_USERS + 1)) and torch.equal(batch.target, last)
    assert torch.equal(dm.splits.train_starts, start.starts[trained])  # the trained users' whole logs
    assert torch.equal(dm.splits.train_ends, (start.starts + start.lengths)[trained])
    assert dm.n_items == base.n_items and len(dm.store.evals[EvalSplit.VAL]) == 0


def test_serving_leaves_out_the_log_and_the_held_out_item(base: SeqDataModule) -> None:
    start, last = split_log(base.splits, 0.5)
    dm = log_datamodule(base, start, last)
    model = SASRec(base.n_items, **TINY)
    batch = heldout_batch(model, dm)
    scores = serving_scores(model, blocked(batch))  # [U, V]
    rows = torch.arange(N_USERS)
    assert bool((scores[rows, last] == -math.inf).all()) and bool((scores[:, PAD] == -math.inf).all())
    assert bool((scores[batch.seen_rows, batch.seen_items] == -math.inf).all())
    assert int((scores > -math.inf).sum(1)[0]) == base.n_items - PER_USER // 2 - 1
    slates, _ = Temperature(5.0).draw(scores, 5, gen(0))
    assert not bool((slates == last[:, None]).any())


def test_batch_rows_match_a_batch_built_for_those_rows(base: SeqDataModule) -> None:
    start, last = split_log(base.splits, 0.5)
    start = start.append(torch.where(torch.arange(N_USERS) % 3 == 0, last, PAD))  # uneven lengths
    dm = log_datamodule(base, start, last)
    full = heldout_batch(SASRec(base.n_items, **TINY), dm)
    rows = torch.tensor([1, 3, 4, 10])
    sub, direct = batch_rows(full, rows), dm.store.eval_batch(rows, EvalSplit.TEST)
    assert torch.equal(trim_left(sub.input)[0], direct.input)
    for name in ("users", "target", "seen_rows", "seen_items", "later_rows", "later_items"):
        assert torch.equal(getattr(sub, name), getattr(direct, name)), name


def test_clone_has_the_same_scores_and_its_own_weights() -> None:
    model = SASRec(N_ITEMS, **TINY)
    copy = clone(model)
    x = torch.tensor([[0, 3, 4, 5]])
    model.eval()
    copy.eval()
    assert torch.equal(model.score(x), copy.score(x))
    with torch.no_grad():
        next(copy.parameters()).add_(1.0)
    assert not torch.equal(model.score(x), copy.score(x))


def test_cascade_probabilities_by_hand() -> None:
    click = ClickModel(torch.tensor([[0.0, 0.5, 0.2, 1.0]]), torch.tensor([1.0, 0.5, 0.25]))
    slates = torch.tensor([[1, 2, 3]])
    # q = 0.5, 0.1, 0.25: take at 0, else at 1, else at 2
    expected = torch.tensor([[0.5, 0.5 * 0.1, 0.5 * 0.9 * 0.25]])
    assert_close(click.slot_probabilities(slates), expected, rtol=tol(torch.float32, 4), what="slots")  # 3 products
    assert float(click.value(slates)[0]) == pytest.approx(1 - 0.5 * 0.9 * 0.75)
    assert float(click.value(torch.tensor([[PAD, PAD, PAD]]))[0]) == 0.0
    with pytest.raises(ValueError, match="position_bias"):
        click.take_rates(torch.tensor([[1, 2, 3, 0]]))


def test_simulated_takes_follow_the_cascade() -> None:
    n = 40_000
    click = ClickModel(torch.tensor([[0.0, 0.5, 0.2, 1.0, 0.7]]).expand(n, -1), dcg_position_bias(4))
    slates = torch.tensor([[4, 1, 2, 3]]).expand(n, -1)
    reward = click.simulate(slates, gen(0))  # [n, 4]
    assert set(reward.unique().tolist()) <= {0.0, 1.0} and float(reward.sum(1).max()) == 1.0  # at most one take
    freq, p = reward.mean(0), click.slot_probabilities(slates[:1])[0]  # [4]
    assert bool(((freq - p).abs() < 4.5 * (p * (1 - p) / n).sqrt()).all()), (freq, p)
    assert torch.equal(reward, click.simulate(slates, gen(0)))


def test_attraction_is_a_coin_flip_at_two_percent_of_the_world_mass() -> None:
    scores = torch.tensor([[5.0, math.log(0.02), math.log(0.49), math.log(0.49)]])  # PAD's own score is ignored
    click = ClickModel.from_scores(scores, dcg_position_bias(2))
    assert float(click.attraction[0, PAD]) == 0.0
    # float32 exponentials of scores up to |log 0.02| = 3.9 (an exponent's rounding times that, relative), their
    # sum over 3 items and a ratio, for values <= 1
    atol = tol(torch.float32, 4) * (1 + abs(math.log(0.02)))
    assert float(click.attraction[0, 1]) == pytest.approx(0.5, abs=atol)
    assert float(click.attraction[0, 2]) == pytest.approx(0.49 * 50 / (1 + 0.49 * 50), abs=atol)


@pytest.mark.parametrize("policy", [Temperature(0.7), Epsilon(0.4)], ids=lambda p: p.name)
def test_slate_values_average_to_the_exact_value_of_the_policy(policy: Policy) -> None:
    """Monte Carlo over drawn slates against the sum over every ordered slate of P(slate) · value (exact)."""
    inf, k, n = math.inf, 2, 20_000
    scores = torch.tensor([[-inf, 1.0, 0.2, -0.5, 0.8]])  # [1, 5]
    attraction = torch.tensor([[0.0, 0.6, 0.3, 0.9, 0.1]])
    slates = torch.tensor(list(itertools.permutations([1, 2, 3, 4], k)))  # [P, k]
    prob = policy.propensities(scores.expand(len(slates), -1), slates).double().prod(1)  # [P]
    exact = float((prob * ClickModel(attraction.expand(len(slates), -1), dcg_position_bias(k)).value(slates)).sum())
    values = slate_values(
        policy, scores.expand(n, -1), ClickModel(attraction.expand(n, -1), dcg_position_bias(k)), k, 2, gen(1)
    )  # [2, n]
    mean, se = mean_and_error(values)
    assert mean == pytest.approx(exact, abs=4.5 * float(values.std()) / math.sqrt(values.numel()))
    assert 0 < se < 0.01


def test_greedy_value_is_its_one_slate_exactly() -> None:
    scores = torch.tensor([[-math.inf, 1.0, 3.0, 2.0], [-math.inf, 2.0, -math.inf, 1.0]])
    click = ClickModel(torch.tensor([[0.0, 0.4, 0.5, 0.6], [0.0, 0.1, 0.9, 0.2]]), dcg_position_bias(2))
    values = slate_values(Greedy(), scores, click, 2, 1, None)  # [1, 2]
    want = click.value(torch.tensor([[2, 3], [1, 3]]))
    assert_close(values[0].float(), want, rtol=tol(torch.float32, 4), what="values")  # a sum of 2 products, a cast
    assert mean_and_error(values) == (pytest.approx(float(values.mean())), 0.0)


def test_mean_and_error_over_draws_and_users() -> None:
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)  # [draws, users]
    assert mean_and_error(values) == (pytest.approx(2.5), pytest.approx(1.0))
    assert mean_and_error(values, torch.tensor([True, False])) == (pytest.approx(2.0), pytest.approx(1.0))


def test_exposure_of_served_slates_by_hand() -> None:
    slates = torch.tensor([[1, 2], [1, 3]])
    popularity = torch.tensor([0.0, 10.0, 4.0, 2.0, 0.0])  # 4 items; item 4 never served
    out = exposure(slates, popularity)
    assert out["coverage"] == pytest.approx(0.75)
    assert out["arp"] == pytest.approx((7.0 + 6.0) / 2)
    assert out["gini"] == pytest.approx(6 / 16)  # exposure [2, 1, 1, 0]


def test_run_loop_reports_every_round_and_repeats_with_its_seed(base: SeqDataModule) -> None:
    start, last = split_log(base.splits, 0.5)
    held_out = ope_users(N_USERS, 0.25, seed=0)
    torch.manual_seed(0)
    model = SASRec(base.n_items, **TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    click = ClickModel(torch.rand(N_USERS, base.n_items + 1, generator=gen(2)), dcg_position_bias(3))
    click.attraction[:, PAD] = 0.0
    popularity = torch.bincount(base.splits.values, minlength=base.n_items + 1)
    settings = LoopSettings(rounds=3, k=3, epochs=1, draws=2, bootstrap=50, seed=5)
    frame = run_loop(model, base, start, last, held_out, Temperature(1.0), click, popularity, settings)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the given model is left alone
    assert frame["round"].to_list() == [0, 1, 2] and frame["policy"].unique().to_list() == ["temperature"]
    for col in ("hr@3", "ndcg@3_lo", "coverage", "gini", "arp", "take_rate", "true_value_ope_users", "taken_items"):
        assert frame[col].null_count() == 0, col
    for col in ("ips", "snips_hi", "dr_lo", "estimand", "naive_dr", "naive_estimand", "ess_top"):
        assert frame[col].null_count() == 1 and frame[col][0] is None, col  # round 0 has no earlier log
    # the estimators' "logged" value is the take-rate the OPE users realised one round earlier
    assert frame["logged"][1:].to_list() == pytest.approx(frame["take_rate_ope_users"][:-1].to_list())
    assert frame["take_rate"].min() >= 0.0 and frame["true_value"].max() <= 1.0
    again = run_loop(model, base, start, last, held_out, Temperature(1.0), click, popularity, settings)
    assert again.equals(frame)
