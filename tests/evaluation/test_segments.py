"""Segments by history length and by target popularity, and their metrics."""

from __future__ import annotations

import pytest
import torch

from recsys_attn.evaluation.segments import history_buckets, history_edges, item_popularity_groups, segment_order
from recsys_attn.evaluation.summary import segment_metrics, stage_statistics


def test_history_buckets_with_given_edges_and_tertiles() -> None:
    lengths = torch.tensor([1, 2, 3, 4, 5, 6])
    buckets, names = history_buckets(lengths, history_edges(lengths, [2, 4]))
    assert torch.equal(buckets, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert names == ["history_short", "history_medium", "history_long"]
    tertiles, _ = history_buckets(lengths, history_edges(lengths, None))
    assert torch.equal(torch.bincount(tertiles), torch.tensor([2, 2, 2]))
    _, ranged = history_buckets(lengths, history_edges(lengths, [3]))
    assert ranged == ["history_0-3", "history_4+"]


def test_segments_are_ordered_short_to_long_then_head_to_tail() -> None:
    names = ["target_tail", "history_long", "target_head", "history_short", "target_torso", "history_medium"]
    assert sorted(names, key=segment_order) == [
        "history_short",
        "history_medium",
        "history_long",
        "target_head",
        "target_torso",
        "target_tail",
    ]
    ranged = ["history_101+", "history_11-100", "history_0-10"]  # alphabetically 101+ would come second
    assert sorted(ranged, key=segment_order) == ["history_0-10", "history_11-100", "history_101+"]


def test_head_torso_tail_by_share_of_training_interactions() -> None:
    pop = torch.tensor([0, 10, 5, 3, 1, 1, 0])  # total 20; shares before each item: 0, .5, .75, .9, .95
    groups = item_popularity_groups(pop, [0.2, 0.8])
    assert torch.equal(groups[1:], torch.tensor([0, 1, 1, 2, 2, 2]))  # item 6 never trained on: tail


def test_segment_means_and_counts() -> None:
    values = {"hr@1": torch.tensor([1.0, 0.0, 1.0, 1.0])}
    out = segment_metrics(values, torch.tensor([0, 0, 1, 1]), ["a", "b", "c"], "segments/test/")
    assert out["segments/test/a/hr@1"] == 0.5 and out["segments/test/b/hr@1"] == 1.0
    assert out["segments/test/a/users"] == 2.0 and out["segments/test/c/users"] == 0.0
    assert out["segments/test/c/hr@1"] != out["segments/test/c/hr@1"]  # NaN: no user


def test_stage_statistics_names_and_bootstrap_off() -> None:
    rows = {
        "users": torch.arange(1, 7),
        "history_len": torch.tensor([1, 2, 3, 4, 5, 6]),
        "targets": torch.tensor([1, 1, 2, 2, 3, 3]),
        "ranks": torch.tensor([0, 5, 0, 5, 0, 5]),
    }
    pop = torch.tensor([0, 10, 5, 1])
    out = stage_statistics(rows, "test", [1], pop, 200, 0, None, [0.2, 0.8])
    assert out["test/hr@1_lo"] <= 0.5 <= out["test/hr@1_hi"]
    assert out["segments/test/target_head/hr@1"] == pytest.approx(0.5)  # item 1: users 1 (hit) and 2 (miss)
    assert out["segments/test/history_short/users"] == 2.0
    off = stage_statistics(rows, "test", [1], pop, 0, 0, None, [0.2, 0.8])
    assert not any(k.endswith(("_lo", "_hi")) for k in off)
