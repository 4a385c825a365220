"""Ranking metrics against hand-computed rankings (../shared/PROTOCOL.md)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from recsys_attn.evaluation.metrics import MRR, NDCG, HitRate, ranking_metrics, sampled_ranks, target_ranks
from tests.tolerances import assert_close, tol


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only add overhead, and stall badly on a loaded CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NO_SEEN = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))


def test_rank_counts_candidates_scoring_at_least_the_target() -> None:
    # n_items = 5; column 0 is padding and is never a candidate even with the top score.
    scores = torch.tensor(
        [
            [9.0, 0.1, 0.5, 0.3, 0.5, 0.2],  # target 3 (0.3): items 2, 4 above -> 2
            [9.0, 0.1, 0.5, 0.3, 0.5, 0.2],  # target 2 (0.5): item 4 ties -> 1
            [9.0, 0.1, 0.5, 0.3, 0.5, 0.2],  # target 1 (0.1): all four others -> 4
            [0.0, 0.4, 0.9, 0.3, 0.5, 0.2],  # target 2 (0.9): best -> 0
        ]
    )
    ranks = target_ranks(scores, torch.tensor([3, 2, 1, 2]))
    assert torch.equal(ranks, torch.tensor([2, 1, 4, 0]))


def test_constant_scorer_gets_no_credit() -> None:
    scores = torch.zeros(3, 8)  # n_items = 7, every item ties
    ranks = target_ranks(scores, torch.tensor([1, 4, 7]))
    assert torch.equal(ranks, torch.tensor([6, 6, 6]))  # n_items - 1: every other item ties
    # With history filtered, the filtered items no longer compete.
    seen_rows, seen_items = torch.tensor([0, 0, 2]), torch.tensor([2, 3, 5])
    ranks = target_ranks(scores, torch.tensor([1, 4, 7]), seen_rows, seen_items)
    assert torch.equal(ranks, torch.tensor([4, 6, 5]))


def test_seen_items_are_filtered_per_row() -> None:
    scores = torch.tensor([[0.0, 0.1, 0.5, 0.3, 0.4, 0.2]] * 2)  # order: 2, 4, 3, 5, 1
    targets = torch.tensor([3, 3])
    seen_rows, seen_items = torch.tensor([0, 0]), torch.tensor([2, 5])  # row 0 only
    ranks = target_ranks(scores, targets, seen_rows, seen_items)
    assert torch.equal(ranks, torch.tensor([1, 2]))  # row 0 loses item 2; row 1 unchanged


def test_target_in_its_own_history_is_not_filtered() -> None:
    scores = torch.tensor([[0.0, 0.1, 0.5, 0.3, 0.4, 0.2]])
    # The target 2 was seen before (a repeat) and so was item 4; only item 4 leaves the ranking.
    ranks = target_ranks(scores, torch.tensor([4]), torch.tensor([0, 0]), torch.tensor([4, 2]))
    assert torch.equal(ranks, torch.tensor([0]))
    ranks = target_ranks(scores, torch.tensor([2]), torch.tensor([0, 0]), torch.tensor([2, 4]))
    assert torch.equal(ranks, torch.tensor([0]))
    ranks = target_ranks(scores, torch.tensor([3]), torch.tensor([0, 0, 0]), torch.tensor([3, 3, 1]))
    assert torch.equal(ranks, torch.tensor([2]))  # duplicates in the history are harmless


def test_pad_and_mask_columns_are_never_candidates() -> None:
    n_items = 4
    # Columns: PAD, items 1..4, MASK (n_items + 1), each of PAD and MASK with the best score.
    scores = torch.tensor([[100.0, 0.4, 0.3, 0.2, 0.1, 100.0]])
    ranks = target_ranks(scores, torch.tensor([3]), n_items=n_items)
    assert torch.equal(ranks, torch.tensor([2]))
    # Padding in the history (as a collate might emit) changes nothing either.
    ranks = target_ranks(scores, torch.tensor([3]), torch.tensor([0]), torch.tensor([0]), n_items)
    assert torch.equal(ranks, torch.tensor([2]))


def test_n_items_smaller_than_score_width() -> None:
    scores = torch.tensor([[0.0, 0.1, 0.5, 0.3, 7.0, 8.0, 9.0, 9.5]])  # width 8
    targets = torch.tensor([3])
    assert torch.equal(target_ranks(scores, targets, n_items=3), torch.tensor([1]))
    assert torch.equal(target_ranks(scores, targets, n_items=5), torch.tensor([3]))
    assert torch.equal(target_ranks(scores, targets), torch.tensor([5]))  # default: V - 1 = 7


def test_target_ranks_does_not_modify_scores() -> None:
    scores = torch.tensor([[0.0, 0.1, 0.5, 0.3]])
    target_ranks(scores, torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    assert torch.equal(scores, torch.tensor([[0.0, 0.1, 0.5, 0.3]]))


def test_half_precision_scores_rank_like_float() -> None:
    scores = torch.tensor([[0.0, 0.25, 0.5, 0.125, 0.5]], dtype=torch.bfloat16)
    assert torch.equal(target_ranks(scores, torch.tensor([2])), torch.tensor([1]))


def compute(metric: HitRate | NDCG | MRR, ranks: Tensor) -> float:
    metric.update(ranks)
    return metric.compute().item()


RANKS = torch.tensor([0, 2, 6, 30])  # gains 1/log2(rank + 2): 1, 1/2, 1/3, 1/5
METRIC_TOL = tol(torch.float32, 2)
"""Per-user gains are summed in float64 and the mean handed over as float32: a rounding or two of float32."""


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (HitRate(1), 1 / 4),
        (HitRate(2), 1 / 4),  # rank 2 is not < 2
        (HitRate(3), 2 / 4),
        (HitRate(7), 3 / 4),
        (HitRate(30), 3 / 4),
        (HitRate(31), 1.0),
        (NDCG(1), 1 / 4),
        (NDCG(3), (1 + 1 / 2) / 4),
        (NDCG(7), (1 + 1 / 2 + 1 / 3) / 4),
        (NDCG(30), (1 + 1 / 2 + 1 / 3) / 4),  # rank 30 is not < 30
        (NDCG(31), (1 + 1 / 2 + 1 / 3 + 1 / 5) / 4),
        (MRR(), (1 + 1 / 3 + 1 / 7 + 1 / 31) / 4),
    ],
)
def test_metric_values(metric: HitRate | NDCG | MRR, expected: float) -> None:
    assert compute(metric, RANKS) == pytest.approx(expected, rel=METRIC_TOL)


def test_ranking_metrics_collection_names_and_values() -> None:
    metrics = ranking_metrics([1, 7], "test/")
    metrics.update(RANKS)
    out = {k: v.item() for k, v in metrics.compute().items()}
    assert out == pytest.approx(
        {
            "test/hr@1": 1 / 4,
            "test/ndcg@1": 1 / 4,
            "test/hr@7": 3 / 4,
            "test/ndcg@7": (1 + 1 / 2 + 1 / 3) / 4,
            "test/mrr": (1 + 1 / 3 + 1 / 7 + 1 / 31) / 4,
        },
        rel=METRIC_TOL,
    )
    names = set(ranking_metrics([10], "val/", suffix="_s100").keys())
    assert names == {"val/hr@10_s100", "val/ndcg@10_s100", "val/mrr_s100"}


def test_k_larger_than_catalogue() -> None:
    scores = torch.tensor([[0.0, 0.3, 0.2, 0.1]] * 3)  # n_items = 3: ranks are at most 2
    ranks = target_ranks(scores, torch.tensor([1, 2, 3]))
    assert torch.equal(ranks, torch.tensor([0, 1, 2]))
    metrics = ranking_metrics([10], "")
    metrics.update(ranks)
    out = {k: v.item() for k, v in metrics.compute().items()}
    assert out["hr@10"] == 1.0
    assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / 2) / 3, rel=METRIC_TOL)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric HitRate was called before")
def test_empty_metric_is_zero_not_nan() -> None:
    assert HitRate(10).compute().item() == 0.0


def random_eval_set(seed: int, n_users: int = 37, n_items: int = 12) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 5, (n_users, n_items + 1), generator=g).float()  # many ties
    targets = torch.randint(1, n_items + 1, (n_users,), generator=g)
    seen = torch.rand(n_users, n_items + 1, generator=g) < 0.3
    seen[:, 0] = False
    seen_rows, seen_items = seen.nonzero(as_tuple=True)
    return scores, targets, seen_rows, seen_items


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sizes", [[37], [1, 36], [10, 10, 10, 7], [5, 1, 20, 11], [1] * 37])
def test_batching_does_not_change_metrics(seed: int, sizes: list[int]) -> None:
    """Each user counts once: feeding the set in unequal batches gives the one-batch result."""
    scores, targets, seen_rows, seen_items = random_eval_set(seed)
    whole = ranking_metrics([1, 5, 10], "")
    ranks = target_ranks(scores, targets, seen_rows, seen_items)
    whole.update(ranks)
    expected = whole.compute()

    split = ranking_metrics([1, 5, 10], "")
    start = 0
    for size in sizes:
        stop = start + size
        keep = (seen_rows >= start) & (seen_rows < stop)
        part = target_ranks(scores[start:stop], targets[start:stop], seen_rows[keep] - start, seen_items[keep])
        torch.testing.assert_close(part, ranks[start:stop], rtol=0, atol=0)  # integer ranks: exact
        split.update(part)
        start = stop
    got = split.compute()
    assert got.keys() == expected.keys()
    for name in expected:
        assert_close(got[name], expected[name], rtol=METRIC_TOL, what=name)
    # The mean over users, computed directly.
    direct_mrr = (1.0 / (ranks.double() + 1)).mean().float()
    assert_close(got["mrr"], direct_mrr, rtol=METRIC_TOL, what="mrr")


def forbidden_scores(n_items: int, batch: int, seed: int) -> tuple[Tensor, ...]:
    """Scores that make any draw of padding, MASK, a seen item or the target visible.

    Target 0, allowed negatives -1, forbidden columns +1e9: the rank is the number of forbidden
    items drawn. Seen items are given the highest popularity so a popularity draw wants them.
    """
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(1, n_items + 1, (batch,), generator=g)
    seen = torch.rand(batch, n_items + 1, generator=g) < 0.3
    seen[:, 0] = False
    seen_rows, seen_items = seen.nonzero(as_tuple=True)
    scores = torch.full((batch, n_items + 2), -1.0)  # MASK column included
    scores[seen_rows, seen_items] = 1e9
    scores[:, 0] = 1e9
    scores[:, n_items + 1] = 1e9
    rows = torch.arange(batch)
    scores[rows, targets] = 0.0
    popularity = torch.ones(n_items + 2)
    popularity[seen.any(0).nonzero()] = 1e6
    n_allowed = n_items - (seen | torch.nn.functional.one_hot(targets, n_items + 1).bool()).sum(1)
    return scores, targets, seen_rows, seen_items, popularity, n_allowed


@pytest.mark.parametrize("mode", ["uniform", "popularity"])
@pytest.mark.parametrize("n_items", [20, 400])  # fewer / more allowed items than 100 negatives
def test_sampled_ranks_never_draw_forbidden_items(mode: str, n_items: int) -> None:
    for seed in range(3):
        scores, targets, seen_rows, seen_items, pop, n_allowed = forbidden_scores(n_items, 32, seed)
        popularity = pop if mode == "popularity" else None
        ranks = sampled_ranks(scores, targets, seen_rows, seen_items, 100, popularity, n_items=n_items)
        assert torch.equal(ranks, torch.zeros(32, dtype=torch.long))
        # The same draws, with every allowed negative above the target: all of them count.
        scores[scores == -1.0] = 1.0
        ranks = sampled_ranks(scores, targets, seen_rows, seen_items, 100, popularity, n_items=n_items)
        assert torch.equal(ranks, n_allowed.clamp_max(100))


def test_sampled_ranks_popularity_draws_popular_items_first() -> None:
    n_items = 300
    popularity = torch.full((n_items + 1,), 1e-6)
    popularity[1:101] = 1e6  # items 1..100 overwhelmingly popular
    scores = torch.full((4, n_items + 1), -1.0)
    scores[:, 1:101] = 1.0  # ...and they beat the target, nothing else does
    targets = torch.tensor([150, 200, 250, 300])
    scores[torch.arange(4), targets] = 0.0
    ranks = sampled_ranks(scores, targets, *NO_SEEN, 100, popularity)
    assert torch.equal(ranks, torch.full((4,), 100))
    # Uniform draws pick only about a third of those 100 items.
    torch.manual_seed(0)
    uniform = sampled_ranks(scores, targets, *NO_SEEN, 100)
    assert (uniform < 60).all()


def test_sampled_ranks_popularity_in_range() -> None:
    torch.manual_seed(0)
    n_items = 500
    scores = torch.randn(64, n_items + 1)
    targets = torch.randint(1, n_items + 1, (64,))
    popularity = torch.randint(0, 50, (n_items + 1,)).float()  # zeros included
    seen_rows = torch.arange(64).repeat_interleave(5)
    seen_items = torch.randint(1, n_items + 1, (320,))
    ranks = sampled_ranks(scores, targets, seen_rows, seen_items, 100, popularity)
    assert ranks.dtype == torch.long and ranks.shape == (64,)
    assert ((ranks >= 0) & (ranks <= 100)).all()
    assert ranks.unique().numel() > 10  # a real spread of ranks, not a constant


def test_non_finite_scores_count_against_the_model() -> None:
    nan, inf = float("nan"), float("inf")
    # A diverged model (every score NaN) ranks every target last, never first.
    scores = torch.full((2, 6), nan)
    ranks = target_ranks(scores, torch.tensor([1, 4]), torch.tensor([1]), torch.tensor([2]))
    assert torch.equal(ranks, torch.tensor([4, 3]))  # 5 items minus the target (minus 1 seen item in row 1)
    # A NaN competitor beats a finite target; an infinite target still loses to everything.
    scores = torch.tensor([[0.0, 0.9, nan, 0.1, 0.2], [0.0, inf, 0.5, -inf, 0.2]])
    assert torch.equal(target_ranks(scores, torch.tensor([1, 1])), torch.tensor([1, 3]))
    metric = NDCG(10)
    metric.update(target_ranks(torch.full((3, 20), nan), torch.tensor([1, 2, 3])))
    assert float(metric.compute()) == 0.0
