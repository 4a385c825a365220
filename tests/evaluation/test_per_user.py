"""Per-user rows: each user once, in user order, whatever device held it."""

from __future__ import annotations

import torch

from recsys_attn.evaluation.per_user import PerUserRows, unique_users


def test_a_user_seen_twice_keeps_its_first_row() -> None:
    rows = {
        "users": torch.tensor([3, 1, 3, 2]),
        "history_len": torch.tensor([30, 10, 31, 20]),
        "targets": torch.tensor([7, 5, 8, 6]),
        "ranks": torch.tensor([0, 1, 2, 3]),
    }
    out = unique_users(rows)
    assert torch.equal(out["users"], torch.tensor([1, 2, 3]))
    assert torch.equal(out["history_len"], torch.tensor([10, 20, 30]))
    assert torch.equal(out["targets"], torch.tensor([5, 6, 7]))
    assert torch.equal(out["ranks"], torch.tensor([1, 3, 0]))


def test_rows_of_two_batches_and_a_merged_device() -> None:
    metric, other = PerUserRows(), PerUserRows()
    metric.update(torch.tensor([4, 2]), torch.tensor([40, 20]), torch.tensor([9, 8]), torch.tensor([5, 0]))
    other.update(torch.tensor([1, 2]), torch.tensor([10, 20]), torch.tensor([7, 8]), torch.tensor([2, 0]))
    metric.merge_state(other)  # the cat reduction across devices; user 2 was evaluated on both
    out = metric.compute()
    assert torch.equal(out["users"], torch.tensor([1, 2, 4]))
    assert torch.equal(out["ranks"], torch.tensor([2, 0, 5]))
    metric.reset()
    assert metric.compute()["users"].numel() == 0  # nothing evaluated: empty rows, no error
