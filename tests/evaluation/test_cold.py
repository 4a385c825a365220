"""Cold-start ranking: the target among the cold items only, against the exact value of a random ranking."""

import pytest
import torch

from recsys_attn.data.batches import EvalBatch
from recsys_attn.evaluation.cold import cold_items_of, cold_ranks, cold_statistics, random_ranking_values
from recsys_attn.evaluation.metrics import per_user_values
from recsys_attn.models.popularity import Popularity
from tests.tolerances import assert_close, sum_tol


def test_cold_items_are_the_untrained_ones_never_padding() -> None:
    assert cold_items_of(torch.tensor([0.0, 3.0, 0.0, 1.0, 0.0])).tolist() == [False, False, True, False, True]


def test_the_target_competes_with_the_unseen_cold_items_only_and_ties_count_against_it() -> None:
    cold = torch.tensor([False, False, True, True, True, True])  # items 2..5 cold, 1 warm
    scores = torch.tensor(
        [
            [0.0, 9.0, 1.0, 2.0, 3.0, 1.0],  # target 2 (cold): 3 and 4 beat it, 5 ties: rank 3 of 4 candidates
            [0.0, 9.0, 1.0, 2.0, 3.0, 1.0],  # target 2, item 4 seen: rank 2 of 3 candidates
            [0.0, 9.0, 1.0, 2.0, 3.0, 1.0],  # target 1 (warm): not a cold row
        ]
    )
    targets = torch.tensor([2, 2, 1])
    is_cold, ranks, candidates = cold_ranks(scores, targets, torch.tensor([1]), torch.tensor([4]), cold)
    assert is_cold.tolist() == [True, True, False]
    assert ranks[:2].tolist() == [3, 2] and candidates[:2].tolist() == [4, 3]


@pytest.mark.parametrize("m", [1, 2, 7, 30])
def test_the_random_ranking_value_is_the_mean_over_every_rank(m: int) -> None:
    expected = {name: v.mean() for name, v in per_user_values(torch.arange(m), [1, 5, 10]).items()}
    got = random_ranking_values(torch.tensor([m, m]), [1, 5, 10])
    for name, value in expected.items():
        assert_close(got[name], value.expand(2), rtol=sum_tol(torch.float64, m), what=name)


def test_statistics_count_only_the_cold_rows() -> None:
    rows = {
        "users": torch.tensor([1, 2, 3, 4]),
        "is_cold": torch.tensor([1, 0, 1, 1]),
        "ranks": torch.tensor([0, 0, 1, 50]),
        "candidates": torch.tensor([10, 10, 10, 100]),
    }
    out = cold_statistics(rows, "test", [10], bootstrap=100, seed=0)
    assert out["test_cold/users"] == 3.0
    assert out["test_cold/hr@10"] == pytest.approx(2 / 3)
    assert out["test_cold/hr@10_random"] == pytest.approx((1.0 + 1.0 + 0.1) / 3)
    assert out["test_cold/hr@10_lo"] <= out["test_cold/hr@10"] <= out["test_cold/hr@10_hi"]
    assert cold_statistics({**rows, "is_cold": torch.zeros(4)}, "test", [10], 100, 0) == {}


def test_a_model_ranks_cold_targets_in_its_evaluation() -> None:
    """Through RecModule: test_cold/* appears when some target is untrained, and not otherwise."""
    pop = torch.tensor([0.0, 5.0, 0.0, 3.0, 0.0])  # items 2 and 4 cold
    model = Popularity(4, pop, bootstrap=0)
    model.cold_evaluation = True  # no datamodule to say its split holds items out
    empty = torch.zeros(0, dtype=torch.long)
    logged: dict[str, float] = {}
    model.log_dict = lambda values, **_: logged.update(values)  # type: ignore[method-assign]
    model._publish = logged.update  # type: ignore[method-assign]
    for targets, cold_users in (([2, 1], 1.0), ([1, 3], None)):
        logged.clear()
        batch = EvalBatch(torch.tensor([1, 2]), torch.ones(2, 3, dtype=torch.long), torch.tensor(targets), *[empty] * 4)
        model._evaluate(batch, "test")
        model._finish_evaluation("test")
        assert logged.get("test_cold/users") == cold_users, logged
        if cold_users:  # popularity scores both cold items 0: a tie, counted against the target (rank 1 of 2)
            assert logged["test_cold/hr@1"] == 0.0 and logged["test_cold/hr@1_random"] == 0.5
        model.cold_evaluation = None  # and without a datamodule holding items out: no cold ranking
        logged.clear()
        model._evaluate(batch, "test")
        model._finish_evaluation("test")
        assert "test_cold/users" not in logged and "test/users" in logged
        model.cold_evaluation = True
