"""Typed batches and the vectorised functions that build them from flat item tensors."""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import torch
from torch import Tensor

from recsys_attn.constants import PAD, mask_id
from recsys_attn.data.samples import SampleSpec


class TrainBatch(NamedTuple):
    """Training batch for both sample kinds: a loss is taken wherever ``target != PAD``."""

    input: Tensor  # [B, L] left-padded item ids (MASK at masked positions for cloze)
    target: Tensor  # [B, L] item to predict at each position, PAD = no loss
    seq: Tensor | None = None  # [B] training sequence of each row (sampled negatives avoid its items)
    expected_targets: float | None = None
    """Loss positions a random batch of this size holds on average; set when batches are grouped by
    length, so the model scales the mean loss to weigh each position as a random batch would."""
    rng_seed: int | None = None
    """Seeds the model's random draws for this batch (dropout, sampled negatives), so a resumed run
    replays them; None = the global random state."""
    times: Tensor | None = None  # [B, L] seconds since the epoch of each input (0 at padding; models that read them)


class EvalBatch(NamedTuple):
    """Validation/test batch: one held-out item per user and the history to filter."""

    users: Tensor  # [B] user_idx
    input: Tensor  # [B, L] left-padded history (cloze: ends with MASK)
    target: Tensor  # [B] held-out item
    seen_rows: Tensor  # [S] row in the batch of each seen (history) item
    seen_items: Tensor  # [S] the seen item
    later_rows: Tensor  # [S'] row of each item the user interacted with after the target
    later_items: Tensor  # [S'] (never a sampled-protocol negative; empty for a leave-one-out test set)
    times: Tensor | None = None  # [B, L] seconds since the epoch of each input (cloze: MASK at the last item's time)

    def to(self, device: torch.device) -> EvalBatch:
        """This batch with every tensor on ``device``."""
        fixed = (
            self.users,
            self.input,
            self.target,
            self.seen_rows,
            self.seen_items,
            self.later_rows,
            self.later_items,
        )
        u, inp, target, seen_rows, seen_items, later_rows, later_items = (t.to(device) for t in fixed)
        times = None if self.times is None else self.times.to(device)
        return EvalBatch(u, inp, target, seen_rows, seen_items, later_rows, later_items, times)


class EvalSplit(IntEnum):
    """The evaluation views of the data, in the order the datamodule keeps them."""

    VAL = 0
    """Validation: each user's history before the validation item, which is the target."""
    TEST = 1
    """Test: the history up to the validation item; the test item is the target."""
    FULL = 2
    """Every user's whole history and no target: recommendations after everything known (serving)."""


class TrainRequest(NamedTuple):
    """Rows of the training store to turn into a batch (built where the data lives)."""

    rows: Tensor  # [B]
    seed: int
    """Seeds this batch's random draws (cloze masks, then the model's): fixed by (seed, epoch, batch, rank)."""


class TrainRequests(NamedTuple):
    """Consecutive training requests handed to the model in one call (``data.steps_per_call``)."""

    requests: tuple[TrainRequest, ...]


class TrainBatches(NamedTuple):
    """Consecutive training batches the model takes one optimiser step each for, in one call of its step.

    Lightning's per-batch loop (fetch, transfer, hooks, callbacks) then runs once per ``len(batches)`` steps.
    """

    batches: tuple[TrainBatch, ...]


class EvalRequest(NamedTuple):
    """Rows of an evaluation set to turn into a batch."""

    rows: Tensor  # [B]
    split: EvalSplit


def left_pad(values: Tensor, starts: Tensor, ends: Tensor, length: int) -> Tensor:
    """The last ``length`` items of each ``values[start:end]``, left-padded with PAD: ``[R, length]``."""
    cols = torch.arange(-length, 0, device=values.device)  # [L] = -L..-1
    idx = ends[:, None] + cols[None, :]  # [R, L] positions in values
    valid = idx >= starts[:, None]  # [R, L]
    if values.numel() == 0:  # only empty rows: nothing to gather
        return torch.full_like(idx, PAD, dtype=values.dtype)  # [R, L]
    return torch.where(valid, values[idx.clamp_min(0)], PAD)  # [R, L]


def eval_input(history: Tensor, spec: SampleSpec, n_items: int) -> Tensor:
    """The model input after left-padded histories ``[B, spec.history_len]``: cloze appends a MASK to score.

    The one place an evaluation (and serving) input is built: the datamodule and the exported scorer call it.
    """
    if not spec.cloze:
        return history  # [B, L]
    mask_col = torch.full_like(history[:, :1], mask_id(n_items))  # [B, 1]
    return torch.cat([history, mask_col], dim=1)  # [B, L + 1]


def eval_times(times: Tensor, spec: SampleSpec) -> Tensor:
    """The timestamps of ``eval_input``'s columns, after left-padded history times ``[B, spec.history_len]``.

    Cloze's MASK stands where the next item will be, at the time of the last one known (no request time).
    """
    if not spec.cloze:
        return times  # [B, L]
    return torch.cat([times, times[:, -1:]], dim=1)  # [B, L + 1]


def ragged_coo(values: Tensor, starts: Tensor, ends: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's items ``values[start:end]`` as (row, item) pairs, vectorised."""
    lengths = ends - starts  # [R]
    total = int(lengths.sum())
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=values.device), lengths, output_size=total)
    offsets = torch.cumsum(lengths, 0) - lengths  # [R]
    pos = torch.arange(total, device=values.device) + (starts - offsets)[rows]  # [S]
    return rows, values[pos]


def trim_left(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Drop leading columns that are padding in every row of the first tensor (positions count from the right)."""
    filled = (tensors[0] != PAD).any(0)  # [L]
    last = tensors[0].shape[1] - 1
    first = int(torch.where(filled.any(), torch.argmax(filled.int()), last))  # one wait for the device, not two
    return tuple(t[:, first:] for t in tensors)


def next_item_batch(rows: Tensor, times: Tensor | None = None, trim: bool = True) -> TrainBatch:
    """Shifted next-item targets from windows of ``L + 1`` items ``[B, L + 1]`` (and their ``times``, alike).

    ``trim``: leading columns of padding in every row are dropped (``False``: the batch keeps its width).
    """
    inp = rows[:, :-1]  # [B, L]
    target = torch.where(inp != PAD, rows[:, 1:], PAD)  # [B, L] no target without an input
    return _train_batch(inp, target, None if times is None else times[:, :-1], trim)


def cloze_batch(
    rows: Tensor,
    last_only: Tensor,
    mask_prob: float,
    mask_token: int,
    generator: torch.Generator | None = None,
    times: Tensor | None = None,
    trim: bool = True,
) -> TrainBatch:
    """Cloze (masked-item) batch from windows ``[B, L]``: each real item masked with ``mask_prob``.

    Rows flagged ``last_only`` mask only their last item, as BERT4Rec's extra training samples do.
    The masks are drawn from ``generator`` (on the rows' device; None = the global random state). A masked
    item keeps its timestamp in ``times`` ``[B, L]``: when it happened is known, what it was is not. ``trim`` as
    in ``next_item_batch``.
    """
    real = rows != PAD  # [B, L]
    random_mask = torch.rand(rows.shape, device=rows.device, generator=generator) < mask_prob  # [B, L]
    last = torch.zeros_like(real)
    last[:, -1] = True  # left padding: the last column holds each row's last item
    masked = torch.where(last_only[:, None], last, random_mask) & real  # [B, L]
    inp = torch.where(masked, mask_token, rows)  # [B, L]
    target = torch.where(masked, rows, PAD)  # [B, L]
    return _train_batch(inp, target, times, trim)


def _train_batch(inp: Tensor, target: Tensor, times: Tensor | None, trim: bool) -> TrainBatch:
    """The batch of inputs, targets and (optional) times ``[B, L]``, their common padding columns trimmed."""
    kept = with_times((inp, target), times)
    inp, target, *rest = trim_left(*kept) if trim else kept
    return TrainBatch(inp, target, times=rest[0] if rest else None)


def with_times(tensors: tuple[Tensor, ...], times: Tensor | None) -> tuple[Tensor, ...]:
    """``tensors``, followed by ``times`` when there are some (so one ``trim_left`` cuts them all alike)."""
    return tensors if times is None else (*tensors, times)
