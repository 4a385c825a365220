"""The prepared sequences as tensors: training windows and evaluation views, cut as the model's sample spec says."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from recsys_attn.constants import PAD, mask_id
from recsys_attn.data.batches import (
    EvalBatch,
    EvalRequest,
    EvalSplit,
    TrainBatch,
    TrainBatches,
    TrainRequest,
    TrainRequests,
    cloze_batch,
    eval_input,
    eval_times,
    left_pad,
    next_item_batch,
    ragged_coo,
    trim_left,
    with_times,
)
from recsys_attn.data.history import HistoryIndex
from recsys_attn.data.samples import SampleSpec
from recsys_attn.data.sampling import batch_seed
from recsys_attn.data.settings import DataSettings
from recsys_attn.data.split import EvalSet, Splits
from recsys_attn.errors import ConfigError

Request = TrainRequest | TrainRequests | EvalRequest
"""What a loader yields: one training batch's rows, several (``data.steps_per_call``), or an evaluation batch's."""


class SequenceStore:
    """Training windows and evaluation views as tensors, cut as ``spec`` says, movable to any device at once."""

    def __init__(self, splits: Splits, settings: DataSettings, n_items: int, spec: SampleSpec) -> None:
        self.settings, self.n_items, self.spec = settings, n_items, spec
        starts, ends = splits.train_starts, splits.train_ends  # [T]
        if settings.max_train_users is not None:
            starts, ends = starts[: settings.max_train_users], ends[: settings.max_train_users]
        trainable = (ends - starts) >= spec.min_items  # [T] sequences with something to predict
        self.n_untrainable = int((~trainable).sum())
        starts, ends = starts[trainable], ends[trainable]
        self.history = HistoryIndex.build(splits.values, starts, ends, n_items)
        """Each training sequence's items (``model.negatives_exclude_history`` draws negatives outside them)."""
        seq = torch.arange(starts.numel())  # [T']
        if settings.window_stride is not None and not spec.cloze:
            seq, starts, ends = sliding_windows(starts, ends, spec.window, settings.window_stride, spec.min_items)
        self.window_seq = seq  # [N] training sequence of each window
        self.windows = left_pad(splits.values, starts, ends, spec.window).int()  # [N, W]
        self.values = splits.values.int()  # [I]
        self.times: Tensor | None = None  # [I] seconds of each value, for a model that reads them
        self.time_windows: Tensor | None = None  # [N, W] the windows' timestamps
        if spec.times:
            if splits.times is None:
                raise ConfigError(
                    f"this model reads each interaction's timestamp (model.time_buckets), and {splits.untimed:,} "
                    "interactions of the data have none: use a data set with timestamps (data=ml-100k, "
                    "data=ml-1m-raw, data=interactions with a timestamp column) or set model.time_buckets=0"
                )
            self.times = splits.times  # [I]
            self.time_windows = left_pad(splits.times, starts, ends, spec.window)  # [N, W]
        real = (self.windows != PAD).sum(1)  # [N] real items per window
        self.sample_lengths = real.repeat(self.n_train_samples // max(real.numel(), 1))  # [n_train_samples]
        """Real items in each training sample (cloze: the last-item copies repeat them); batches group by it."""
        self.mean_targets = _mean_targets(real, spec, self.n_train_samples > real.numel())
        """Loss positions per training sample over an epoch (expected, for cloze masking)."""
        self.evals = (
            splits.val.subset(settings.max_eval_users),
            splits.test.subset(settings.max_eval_users),
            splits.full,
        )
        """The evaluation sets, indexed by ``EvalSplit``."""

    @property
    def n_train_samples(self) -> int:
        """Samples per epoch (cloze doubles them with the last-item-only copies)."""
        n = int(self.windows.shape[0])
        return 2 * n if self.spec.cloze and self.settings.cloze_last_item_samples else n

    def to(self, device: torch.device) -> SequenceStore:
        """A copy whose tensors live on ``device`` (self when already there)."""
        if self.windows.device == device:
            return self
        moved = copy.copy(self)
        moved.windows, moved.values = self.windows.to(device), self.values.to(device)
        moved.window_seq = self.window_seq.to(device)
        if self.times is not None and self.time_windows is not None:
            moved.times, moved.time_windows = self.times.to(device), self.time_windows.to(device)
        moved.evals = tuple(e.map(lambda t: t.to(device)) for e in self.evals)  # type: ignore[assignment]
        return moved

    def batch(self, request: Request) -> TrainBatch | TrainBatches | EvalBatch:
        """The batch a loader request asks for (vectorised, on the request rows' device)."""
        if isinstance(request, TrainRequests):
            return TrainBatches(tuple(self.train_batch(r.rows, r.seed) for r in request.requests))
        if isinstance(request, TrainRequest):
            return self.train_batch(request.rows, request.seed)
        return self.eval_batch(request.rows, request.split)

    def train_batch(self, idx: Tensor, seed: int) -> TrainBatch:
        """Training batch for sample indices ``[B]``; its random draws all follow from ``seed``."""
        n = self.windows.shape[0]
        window = idx % n if self.spec.cloze else idx  # [B] (cloze: indices past n are last-item-only copies)
        rows = self.windows[window].long()  # [B, W]
        times = self.time_windows[window] if self.time_windows is not None else None  # [B, W]
        seq = self.window_seq[window]  # [B]
        expected = idx.numel() * self.mean_targets if self.settings.length_grouping > 1 else None
        model_seed = batch_seed(seed, 1)  # the model's own stream, apart from the masks'
        last_only = idx >= n  # [B]
        static = self.spec.static
        if static and idx.numel() < self.settings.batch_size:  # a short last batch: filled with empty rows
            rows, times, seq, last_only = _filled(self.settings.batch_size, rows, times, seq, last_only)
        if not self.spec.cloze:
            batch = next_item_batch(rows, times, trim=not static)
            return batch._replace(seq=seq, expected_targets=expected, rng_seed=model_seed)
        masks = torch.Generator(device=rows.device).manual_seed(seed)
        batch = cloze_batch(rows, last_only, self.spec.mask_prob, mask_id(self.n_items), masks, times, trim=not static)
        return batch._replace(seq=seq, expected_targets=expected, rng_seed=model_seed)

    def eval_batch(self, idx: Tensor, split: EvalSplit) -> EvalBatch:
        """Evaluation batch for rows ``[B]`` of an evaluation set (``FULL``: whole histories, no target)."""
        return eval_batch_of(self.values, self.evals[split], idx, self.spec, self.n_items, self.times)


def eval_batch_of(
    values: Tensor, es: EvalSet, idx: Tensor, spec: SampleSpec, n_items: int, times: Tensor | None = None
) -> EvalBatch:
    """The evaluation batch of rows ``idx`` ``[B]`` of ``es``, whose histories are slices of ``values``.

    The one way a model input is cut from a history (the most recent ``spec.history_len`` items; cloze: a
    MASK appended), for the datamodule's own users and for histories read at serving time alike. ``times``
    ``[I]``, the timestamp of each of ``values``, gives the batch the inputs' times.
    """
    starts, ends = es.starts[idx], es.ends[idx]  # [B]
    history = left_pad(values, starts, ends, spec.history_len).long()  # [B, L'] (values may be int32: widened here)
    history_times = None if times is None else eval_times(left_pad(times, starts, ends, spec.history_len), spec)
    inp, *rest = trim_left(*with_times((eval_input(history, spec, n_items),), history_times))  # [B, <= L] (+ times)
    inp_times = rest[0] if rest else None
    seen_rows, seen_items = ragged_coo(values, starts, ends)  # [S], [S]
    user_ends = es.user_ends[idx]  # [B] whole histories (FULL) have no target and nothing later
    later_rows, later_items = ragged_coo(values, torch.minimum(ends + 1, user_ends), user_ends)  # [S'], [S']
    return EvalBatch(
        es.users[idx],
        inp,
        es.targets[idx].long(),
        seen_rows,
        seen_items.long(),
        later_rows,
        later_items.long(),
        inp_times,
    )


def _filled(
    size: int, rows: Tensor, times: Tensor | None, seq: Tensor, last_only: Tensor
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """A batch's windows ``[B, W]`` (times, sequences, last-only flags) filled to ``size`` rows with empty ones."""
    extra = size - rows.shape[0]
    rows = torch.cat([rows, rows.new_full((extra, rows.shape[1]), PAD)])  # [size, W] no item, so no target
    if times is not None:
        times = torch.cat([times, times.new_zeros((extra, times.shape[1]))])  # [size, W]
    seq = torch.cat([seq, seq.new_zeros(extra)])  # [size]
    last_only = torch.cat([last_only, last_only.new_zeros(extra)])  # [size]
    return rows, times, seq, last_only


def _mean_targets(real: Tensor, spec: SampleSpec, last_item_copies: bool) -> float:
    """Average loss positions per training sample, from the real items ``[N]`` of each window."""
    if real.numel() == 0:
        return 0.0
    if not spec.cloze:
        return float((real - 1).clamp_min(0).double().mean())
    per_window = spec.mask_prob * real.double()  # [N] expected masked items
    if last_item_copies:  # each window also comes once with only its last item masked
        per_window = (per_window + 1.0) / 2.0
    return float(per_window.mean())


def sliding_windows(
    starts: Tensor, ends: Tensor, width: int, stride: int, min_items: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Sliding windows of ``width`` ending every ``stride`` items back from each sequence's end.

    A sequence gets windows until one reaches back to its first item (``stride < width``; none further back, whose
    targets the last one already holds) and only while a window keeps ``min_items`` (``stride > width`` leaves gaps
    between windows; one further back would hold too few). Returns the sequence of each window, its start and its end.
    """
    lengths = ends - starts  # [T] each >= min_items
    reaching = torch.div((lengths - width).clamp_min(0) + stride - 1, stride, rounding_mode="floor")  # [T]
    keeping = torch.div(lengths - min_items, stride, rounding_mode="floor")  # [T] last window with min_items
    n_windows = 1 + torch.minimum(reaching, keeping)  # [T]
    seq = torch.repeat_interleave(torch.arange(lengths.numel()), n_windows)  # [N]
    first = torch.cumsum(n_windows, 0) - n_windows  # [T]
    k = torch.arange(seq.numel()) - first[seq]  # [N] window number within its sequence
    return seq, starts[seq], ends[seq] - k * stride
