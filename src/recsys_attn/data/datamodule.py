"""One LightningDataModule for next-item (SASRec, GRU4Rec) and cloze (BERT4Rec) training."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from recsys_attn.data.batches import (
    EvalBatch,
    EvalRequest,
    EvalSplit,
    TrainBatch,
    TrainBatches,
    TrainRequest,
    TrainRequests,
)
from recsys_attn.data.cache import load_prepared
from recsys_attn.data.download import data_path
from recsys_attn.data.feature_config import FeatureSet, feature_set
from recsys_attn.data.features import load_item_features, with_feature_items
from recsys_attn.data.identity import DataIdentity, data_identity
from recsys_attn.data.item_features import ItemFeatures
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.preprocess import Preparation, relax_advice
from recsys_attn.data.samples import SampleSpec
from recsys_attn.data.sampling import IndexBatches
from recsys_attn.data.settings import DataSettings
from recsys_attn.data.sources import Source
from recsys_attn.data.split import (
    SplitConfig,
    Splits,
    check_held_out,
    check_trainable,
    split_interactions,
)
from recsys_attn.data.store import Request, SequenceStore
from recsys_attn.errors import ConfigError
from recsys_attn.settings import build_settings

log = logging.getLogger(__name__)


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
