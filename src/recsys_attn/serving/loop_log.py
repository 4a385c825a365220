"""The production side of a simulated feedback loop: the log a model learns from, and training on it.

``Log`` holds each user's items (a start log, then what they took); ``log_datamodule`` hands it to Lightning with
each user's held-out real item as the test target, never as a training item, and trains only on the users it is
told to; ``fine_tune`` trains a model on it for a few epochs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import NamedTuple

import lightning as L
import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.split import EvalSet, Splits
from recsys_attn.models.base import RecModule
from recsys_attn.models.guards import NonFiniteLossGuard


class Log(NamedTuple):
    """Every user's items, oldest first, in one flat tensor; row ``u`` of ``lengths`` is user_idx ``u + 1``."""

    values: Tensor  # [N] item indices, users concatenated in user_idx order
    lengths: Tensor  # [U] items per user

    @property
    def starts(self) -> Tensor:
        """Where each user's items begin in ``values`` ``[U]``."""
        return self.lengths.cumsum(0) - self.lengths

    def append(self, items: Tensor) -> Log:
        """The log with one item per user ``[U]`` appended after their last (PAD: nothing to append)."""
        if items.shape != self.lengths.shape:
            raise ValueError(f"append: one item per user {tuple(self.lengths.shape)}, got {tuple(items.shape)}")
        took = items != PAD  # [U]
        lengths = self.lengths + took.long()  # [U]
        starts = lengths.cumsum(0) - lengths  # [U]
        owner = torch.repeat_interleave(torch.arange(self.lengths.numel()), self.lengths)  # [N] row of each item
        offset = torch.arange(self.values.numel()) - self.starts[owner]  # [N] place within its user
        values = torch.empty(int(lengths.sum()), dtype=self.values.dtype)  # [N']
        values[starts[owner] + offset] = self.values
        values[(starts + lengths - 1)[took]] = items[took].to(self.values.dtype)
        return Log(values, lengths)


def split_log(splits: Splits, share: float, min_items: int = 2) -> tuple[Log, Tensor]:
    """Each user's first ``share`` of real items (at least ``min_items``) as a start log, and their last item ``[U]``.

    The items in between never enter the log: the world knows them, the production model does not.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"share: must be in (0, 1), got {share}")
    full = splits.full  # every user's whole sequence, in user_idx order
    counts = full.ends - full.starts  # [U]
    if bool((counts < min_items + 1).any()):
        raise ValueError(f"split_log: every user needs at least {min_items + 1} items (a start log and a last item)")
    lengths = (counts.double() * share).floor().long().clamp(min=min_items).minimum(counts - 1)  # [U]
    owner = torch.repeat_interleave(torch.arange(counts.numel()), lengths)  # [N'] row of each kept item
    offset = torch.arange(owner.numel()) - (lengths.cumsum(0) - lengths)[owner]  # [N'] place within its user
    return Log(splits.values[full.starts[owner] + offset], lengths), splits.values[full.ends - 1]


def ope_users(n_users: int, share: float, seed: int) -> Tensor:
    """A random ``share`` of the users ``[U]`` (bool, seeded): kept out of training, their slates evaluate models."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share: must be in (0, 1), got {share}")
    order = torch.randperm(n_users, generator=torch.Generator().manual_seed(seed))  # [U]
    chosen = torch.zeros(n_users, dtype=torch.bool)
    chosen[order[: max(1, round(share * n_users))]] = True
    return chosen


def log_splits(log: Log, targets: Tensor, n_items: int, trained: Tensor | None = None) -> Splits:
    """Training on the logs of the ``trained`` users ``[U]`` (bool; None = all), testing every user on ``targets``.

    The test set holds each user's whole log as input and their target ``[U]``; there is no validation set.
    """
    users = torch.arange(1, log.lengths.numel() + 1)  # [U] user_idx
    starts = log.starts  # [U]
    ends = starts + log.lengths  # [U]
    test = EvalSet(users, starts, ends, targets, ends)
    full = EvalSet(users, starts, ends, torch.zeros_like(users), ends)
    keep = torch.ones_like(users, dtype=torch.bool) if trained is None else trained  # [U]
    no_cold = torch.zeros(n_items + 1, dtype=torch.bool)  # [n_items + 1]
    return Splits(log.values, starts[keep], ends[keep], test.subset(0), test, n_items, full, no_cold)


def log_datamodule(base: SeqDataModule, log: Log, targets: Tensor, trained: Tensor | None = None) -> SeqDataModule:
    """A datamodule with the settings and id maps of ``base`` (set up) over ``log`` (see ``log_splits``)."""
    if base.prepared is None:
        raise RuntimeError("log_datamodule: set the base datamodule up first (base.setup())")
    dm = SeqDataModule(base.source, base.preparation, base.split, **asdict(base.settings))
    dm.prepared = base.prepared  # setup() keeps splits that are already there
    dm.splits = log_splits(log, targets, base.n_items, trained)
    return dm


def fine_tune(model: RecModule, datamodule: SeqDataModule, epochs: int, accelerator: str = "cpu") -> None:
    """Train ``model`` in place for ``epochs`` epochs on the datamodule's training sequences, without validation."""
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[NonFiniteLossGuard()],
    )
    trainer.fit(model, datamodule=datamodule)


def clone(model: RecModule) -> RecModule:
    """A new module of the same class, settings and weights (no trainer attached)."""
    copy = type(model)(item_popularity=model.item_popularity.clone(), **model.hparams)
    copy.load_state_dict(model.state_dict())
    return copy


@contextmanager
def evaluating(model: RecModule) -> Iterator[None]:
    """Eval mode and no gradients inside; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
