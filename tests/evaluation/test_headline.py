"""The end-of-run summary: the headline metrics at the model's cut-offs, with intervals, in a few lines."""

from __future__ import annotations

from recsys_attn.evaluation.headline import headline_lines, headline_names


def test_headline_names_follow_the_cut_offs() -> None:
    assert headline_names([10, 1, 10]) == ["hr@1", "ndcg@1", "hr@10", "ndcg@10", "mrr"]


def test_headline_lines_show_each_split_with_its_interval_and_nothing_else() -> None:
    metrics = {
        "val/hr@10": 0.18061,
        "val/hr@10_lo": 0.171,
        "val/hr@10_hi": 0.19,
        "val/ndcg@10": 0.1004,
        "val/mrr": 0.09,
        "val/users": 6040.0,
        "test/hr@10": 0.2,
        "test/ndcg@10": float("nan"),
        "test/users": 6040.0,
        "segments/test/short/ndcg@10": 0.3,  # metrics.json only
        "val/ndcg@10_s100": 0.5,
        "time/fit_s": 12.0,
    }
    assert headline_lines(metrics, [10]) == [
        "         val (95% interval)      test (95% interval)",
        "hr@10    0.1806 (0.1710–0.1900)  0.2000",
        "ndcg@10  0.1004                  nan",
        "mrr      0.0900                  -",
        "users    6040                    6040",
    ]


def test_no_split_no_lines() -> None:
    assert headline_lines({"time/fit_s": 1.0}, [10]) == []


def test_cold_targets_get_a_column_and_the_random_ranking_a_line() -> None:
    metrics = {
        "test/ndcg@10": 0.1,
        "test/users": 900.0,
        "test_cold/ndcg@10": 0.05,
        "test_cold/ndcg@10_lo": 0.03,
        "test_cold/ndcg@10_hi": 0.08,
        "test_cold/ndcg@10_random": 0.0264,
        "test_cold/hr@10_random": 0.0581,
        "test_cold/users": 107.0,
    }
    lines = headline_lines(metrics, [10])
    assert lines[0].split() == ["test", "(95%", "interval)", "test_cold", "(95%", "interval)"]
    assert lines[1].split()[:4] == ["ndcg@10", "0.1000", "0.0500", "(0.0300–0.0800)"]
    assert lines[-2].split() == ["users", "900", "107"]
    assert lines[-1] == (
        "test_cold: the target among the items no training sequence holds; a random ranking scores ndcg@10 0.0264"
    )
