"""Exact tensors of the vectorised batch builders."""

import torch

from recsys_attn.data.batches import cloze_batch, left_pad, next_item_batch, ragged_coo, trim_left

VALUES = torch.tensor([5, 6, 7, 8, 9, 1, 2, 3])  # user A: 5..9, user B: 1..3


def test_left_pad_keeps_last_items_and_pads_left() -> None:
    starts, ends = torch.tensor([0, 5]), torch.tensor([5, 8])
    out = left_pad(VALUES, starts, ends, 4)
    assert torch.equal(out, torch.tensor([[6, 7, 8, 9], [0, 1, 2, 3]]))
    out = left_pad(VALUES, starts, torch.tensor([3, 6]), 4)
    assert torch.equal(out, torch.tensor([[0, 5, 6, 7], [0, 0, 0, 1]]))


def test_ragged_coo_lists_each_rows_items() -> None:
    rows, items = ragged_coo(VALUES, torch.tensor([5, 0]), torch.tensor([7, 3]))
    assert torch.equal(rows, torch.tensor([0, 0, 1, 1, 1]))
    assert torch.equal(items, torch.tensor([1, 2, 5, 6, 7]))


def test_next_item_batch_shifts_targets_and_drops_target_without_input() -> None:
    rows = torch.tensor([[0, 0, 1, 2, 3], [5, 6, 7, 8, 9]])
    batch = next_item_batch(rows)
    assert torch.equal(batch.input, torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8]]))
    assert torch.equal(batch.target, torch.tensor([[0, 0, 2, 3], [6, 7, 8, 9]]))


def test_trim_left_drops_all_padding_columns_only() -> None:
    a = torch.tensor([[0, 0, 0, 4], [0, 0, 3, 2]])
    b = torch.arange(8).view(2, 4)
    ta, tb = trim_left(a, b)
    assert torch.equal(ta, torch.tensor([[0, 4], [3, 2]]))
    assert torch.equal(tb, torch.tensor([[2, 3], [6, 7]]))
    (empty,) = trim_left(torch.zeros(2, 4, dtype=torch.long))  # only padding: one column stays
    assert empty.shape == (2, 1)


def test_cloze_batch_last_only_masks_exactly_the_last_item() -> None:
    rows = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    batch = cloze_batch(rows, torch.tensor([True, True]), mask_prob=0.5, mask_token=99)
    assert torch.equal(batch.input, torch.tensor([[0, 1, 2, 99], [4, 5, 6, 99]]))
    assert torch.equal(batch.target, torch.tensor([[0, 0, 0, 3], [0, 0, 0, 7]]))


def test_cloze_batch_masks_at_rate_and_only_real_items() -> None:
    torch.manual_seed(0)
    rows = torch.randint(1, 50, (2000, 50))
    rows[:, :10] = 0  # padding: never masked, and trimmed away as all-padding columns
    rows[0, 5] = 7  # ...except where one row has an item
    batch = cloze_batch(rows, torch.zeros(2000, dtype=torch.bool), mask_prob=0.2, mask_token=99)
    rows = rows[:, 5:]
    assert batch.input.shape == rows.shape
    masked = batch.input == 99
    assert not masked[1:, :5].any()
    rate = masked[:, 5:].float().mean().item()
    # a statistical bound, not a rounding one: 90,000 seeded Bernoulli(0.2) draws, standard error 0.0013
    assert abs(rate - 0.2) < 0.01
    # labels exactly on masked positions, holding the original item
    assert torch.equal(batch.target != 0, masked)
    assert torch.equal(batch.target[masked], rows[masked])
    assert torch.equal(batch.input[~masked], rows[~masked])
