"""One LightningDataModule for next-item (SASRec, GRU4Rec) and cloze (BERT4Rec) training."""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

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
from recsys_attn.data.cache import load_prepared
from recsys_attn.data.download import data_path
from recsys_attn.data.feature_config import FeatureSet, feature_set
from recsys_attn.data.features import load_item_features, with_feature_items
from recsys_attn.data.history import HistoryIndex
from recsys_attn.data.identity import DataIdentity, data_identity
from recsys_attn.data.item_features import ItemFeatures
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.preprocess import Preparation, relax_advice
from recsys_attn.data.samples import SampleSpec
from recsys_attn.data.sampling import IndexBatches, batch_seed
from recsys_attn.data.settings import DataSettings
from recsys_attn.data.sources import Source
from recsys_attn.data.split import (
    EvalSet,
    SplitConfig,
    Splits,
    check_held_out,
    check_trainable,
    split_interactions,
)
from recsys_attn.errors import ConfigError
from recsys_attn.settings import build_settings

log = logging.getLogger(__name__)

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
            seq, starts, ends = _windows(starts, ends, spec.window, settings.window_stride, spec.min_items)
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


def _windows(starts: Tensor, ends: Tensor, width: int, stride: int, min_items: int) -> tuple[Tensor, Tensor, Tensor]:
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


class _Requests:
    """The requests of an index stream, one per batch; both loader paths iterate them (a DataLoader as its sampler).

    ``per_call > 1`` (training): consecutive requests go out ``per_call`` at a time as one ``TrainRequests`` (the last
    one of an epoch may hold fewer), each keeping the seed of its own batch number, so the model sees the same
    batches with the same random draws as one at a time.
    """

    def __init__(
        self, batches: IndexBatches, make: Callable[[Tensor, int], TrainRequest | EvalRequest], per_call: int = 1
    ) -> None:
        self.batches, self.make, self.per_call = batches, make, per_call

    def __iter__(self) -> Iterator[Request]:
        requests = (self.make(idx, seed) for idx, seed in self.batches.seeded())
        if self.per_call == 1:
            return requests
        return (TrainRequests(group) for group in _chunks(requests, self.per_call))

    def __len__(self) -> int:
        return -(-len(self.batches) // self.per_call)


def _chunks(items: Iterator[Any], size: int) -> Iterator[tuple[Any, ...]]:
    """Consecutive tuples of ``size`` items (the last one shorter if the items run out)."""
    while chunk := tuple(itertools.islice(items, size)):
        yield chunk


class _BatchDataset(Dataset[Any]):
    """Map-style dataset whose item is the whole batch a request asks for (the worker loader path)."""

    def __init__(self, store: SequenceStore) -> None:
        self.store = store

    def __getitem__(self, request: Request) -> TrainBatch | TrainBatches | EvalBatch:
        return self.store.batch(request)


MODEL_KEYS = {
    "sample_kind": "the model picks its training samples (model=sasrec: next-item, model=bert4rec: cloze)",
    "max_len": "set model.max_len",
    "mask_prob": "set model.mask_prob (BERT4Rec)",
}
"""Former ``data.*`` keys the model now decides (``RecModule.sample_spec``); given here they fail loudly."""


class SeqDataModule(L.LightningDataModule):
    """Prepares a log with polars, splits it, and serves the samples its model asks for.

    After ``setup``: ``n_items``, ``n_users``, ``item_popularity``, ``prepared`` (id maps) and ``item_features``
    (None without a ``features`` config). Batches
    need the model's ``SampleSpec`` too: ``trainer.fit/validate/test`` hand it over in ``setup``;
    without a trainer, call ``connect(model.sample_spec)``.
    """

    def __init__(
        self,
        source: Source,
        preparation: Preparation,
        split: SplitConfig,
        features: FeatureSet | Any = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        owned = sorted(set(settings) & set(MODEL_KEYS))
        if owned:
            raise ConfigError(f"data.{owned[0]}: not a data setting any more; {MODEL_KEYS[owned[0]]}")
        self.source, self.preparation, self.split = source, preparation, split
        self.features = feature_set(features)
        self.settings = build_settings(DataSettings, settings, "data")
        self.item_features: ItemFeatures | None = None
        """The items' encoded side information (after ``setup``; None without feature files)."""
        self.spec: SampleSpec | None = None
        self._store: SequenceStore | None = None
        self._device_store: SequenceStore | None = None
        self.prepared: Prepared | None = None
        self.splits: Splits | None = None

    def prepare_data(self) -> None:
        """Build the prepared cache (and the encoded features) once (rank 0); ``setup`` then only reads them."""
        s = self.settings
        prepared = self._load_prepared()
        load_item_features(self.features, self.source, prepared, s.data_dir, s.cache_dir)

    def _load_prepared(self) -> Prepared:
        """The prepared log, its catalogue extended by the items only feature files name (``unknown_items=add``)."""
        s = self.settings
        prepared = load_prepared(self.source, self.preparation, s.data_dir, s.cache_dir)
        return with_feature_items(self.features, prepared, s.data_dir)

    def setup(self, stage: str | None = None) -> None:
        """Read and split the data (once); under a trainer, connect to its model's samples."""
        if self.splits is None:
            s = self.settings
            self.prepared = self._load_prepared()
            self.item_features = load_item_features(self.features, self.source, self.prepared, s.data_dir, s.cache_dir)
            self.splits = split_interactions(self.prepared.interactions, self.prepared.n_items, self.split)
            if self.split.cold_items:
                self._log_cold(self.splits)
        model = self.trainer.lightning_module if self.trainer is not None else None
        spec = getattr(model, "sample_spec", None)
        if spec is not None:
            self.connect(spec)
        if self.trainer is not None:
            self._check_users(stage, validates=self.trainer.limit_val_batches != 0)

    def _log_cold(self, splits: Splits) -> None:
        test_cold = int(splits.cold[splits.test.targets].sum())
        log.info(
            "data.split.cold_items=%s: %d of %d items held out of training (cold); %d of %d test users have a cold "
            "target (test_cold/* ranks it among the cold items)",
            self.split.cold_items,
            int(splits.cold.sum()),
            splits.n_items,
            test_cold,
            len(splits.test),
        )

    def _check_users(self, stage: str | None, validates: bool) -> None:
        """Refuse a ``stage`` whose part of the split has no user, in one line saying what to change.

        ``fit`` needs a training sample (once a model is connected) and, when it ``validates``, a validation
        user; ``validate`` a validation user; ``test`` a test user.
        """
        if self.splits is None:
            raise RuntimeError("SeqDataModule.setup() must run first")
        prepared = self._prepared()
        where = str(data_path(self.source.path, self.settings.data_dir))
        relax = relax_advice(self.preparation, int(prepared.meta.get("n_raw", 0)), prepared.n_interactions)
        if stage == "fit" and self.spec is not None:
            spec, max_users = self.spec, self.settings.max_train_users
            check_trainable(self.splits, self.split, spec.min_items, spec.kind, where, relax, max_users)
        if (stage == "fit" and validates) or stage == "validate":
            check_held_out(self.splits, self.split, "validation", where, relax)
        if stage == "test":
            check_held_out(self.splits, self.split, "test", where, relax)

    def connect(self, spec: SampleSpec) -> None:
        """Cut batches as the model's ``spec`` says (the training store is rebuilt when it changes)."""
        if spec.cloze and self.settings.window_stride is not None:
            raise ConfigError(
                f"data.window_stride: sliding windows are for next-item samples, and this model trains on "
                f"{spec.kind} samples; set data.window_stride=null"
            )
        if spec != self.spec:
            self.spec, self._store, self._device_store = spec, None, None

    @property
    def store(self) -> SequenceStore:
        """Training windows and evaluation sets, built at first use after ``setup`` and ``connect``."""
        if self._store is None:
            if self.splits is None:
                raise RuntimeError("SeqDataModule.setup() must run before batches are requested")
            if self.spec is None:
                raise RuntimeError(
                    "SeqDataModule: no model connected; call connect(model.sample_spec) (trainer.fit does it)"
                )
            self._store = SequenceStore(self.splits, self.settings, self.n_items, self.spec)
            self._log_sizes(self._store)
        return self._store

    def _log_sizes(self, store: SequenceStore) -> None:
        log.info(
            "data %s: %d users, %d items; %d %s training samples (%d sequences with nothing to predict left out), "
            "%d val / %d test users evaluated",
            self.source.name,
            self.n_users,
            self.n_items,
            store.n_train_samples,
            store.spec.kind,
            store.n_untrainable,
            len(store.evals[EvalSplit.VAL]),
            len(store.evals[EvalSplit.TEST]),
        )

    @property
    def n_items(self) -> int:
        return self._prepared().n_items

    @property
    def n_users(self) -> int:
        return self._prepared().n_users

    @cached_property
    def data_identity(self) -> DataIdentity:
        """Source, preparation and hashes of the item id map and the log (computed once), as checkpoints record them."""
        return data_identity(self.source, self.preparation, self._prepared())

    @property
    def item_popularity(self) -> Tensor:
        """Training-input counts per item ``[n_items + 1]`` (index 0 = padding, always 0)."""
        if self.splits is None:
            raise RuntimeError("SeqDataModule.setup() must run first")
        return self.splits.item_popularity()

    def _prepared(self) -> Prepared:
        if self.prepared is None:
            raise RuntimeError("SeqDataModule.setup() must run first")
        return self.prepared

    # -- loaders ---------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _loader(self, requests: _Requests) -> Any:
        s = self.settings
        if s.loader == "device":
            return requests  # batches are built after transfer, where the data lives
        return DataLoader(
            _BatchDataset(self.store),
            sampler=requests,
            batch_size=None,
            num_workers=s.num_workers,
            pin_memory=s.pin_memory,
            persistent_workers=s.persistent_workers and s.num_workers > 0,
        )

    @property
    def train_steps_per_epoch(self) -> int:
        """Training batches of an epoch on this rank: its optimiser steps, however many a call holds."""
        return len(self._train_batches())

    def train_dataloader(self) -> Any:
        return self._loader(_Requests(self._train_batches(), TrainRequest, self.settings.steps_per_call))

    def _train_batches(self) -> IndexBatches:
        rank, world = self._rank_world()
        return IndexBatches(
            self.store.n_train_samples,
            self.settings.batch_size,
            shuffle=True,
            seed=self.settings.seed,
            epoch_fn=self._epoch,
            rank=rank,
            world_size=world,
            lengths=self.store.sample_lengths,
            group=self.settings.length_grouping,
        )

    def _eval_loader(self, split: EvalSplit) -> Any:
        rank, world = self._rank_world()
        es = self.store.evals[split]
        batches = IndexBatches(len(es), self.settings.eval_batch_size, shuffle=False, rank=rank, world_size=world)
        return self._loader(_Requests(batches, lambda idx, _seed: EvalRequest(idx, split)))

    def val_dataloader(self) -> Any:
        return self._eval_loader(EvalSplit.VAL)

    def test_dataloader(self) -> Any:
        return self._eval_loader(EvalSplit.TEST)

    def predict_dataloader(self) -> Any:
        return self._eval_loader(EvalSplit.TEST)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Device path: turn requests into batches where the data already lives."""
        if isinstance(batch, TrainRequests):
            return self._on(batch.requests[0].rows.device).batch(batch)
        if isinstance(batch, TrainRequest | EvalRequest):
            return self._on(batch.rows.device).batch(batch)
        return batch

    def _on(self, device: torch.device) -> SequenceStore:
        if self._device_store is None or self._device_store.windows.device != device:
            self._device_store = self.store.to(device)
        return self._device_store
