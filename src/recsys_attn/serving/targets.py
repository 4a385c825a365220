"""The target policy on logged slates: a model's scores after each user's history, as OPE needs them.

The histories are the data's (``history_batches``) or those of users the data does not hold, read from a history
file in original ids (``new_user_slates``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
import torch
from torch import Tensor

from recsys_attn.data.batches import EvalBatch, EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.samples import SampleSpec
from recsys_attn.data.store import eval_batch_of
from recsys_attn.errors import RecsysError
from recsys_attn.models.base import RecModule
from recsys_attn.serving.histories import HistoryBlock, read_histories, refuse_untimed
from recsys_attn.serving.logs import index_log
from recsys_attn.serving.ope_estimators import LoggedSlates, RewardModel, TargetSlots
from recsys_attn.serving.policies import Policy

READ_BLOCK = 65_536
"""Users of a history file read at once while picking out the logged ones."""


def history_batches(datamodule: SeqDataModule, users: Tensor, batch_size: int) -> Iterator[EvalBatch]:
    """Batches of the whole histories in the data (``history=all``) of ``users`` ``[S]`` (user_idx), in order."""
    es = datamodule.store.evals[EvalSplit.FULL]
    pos, found = es.rows_of(users)  # [S], [S]
    if not bool(found.all()):
        raise RecsysError(f"logged: user_idx {int(users[~found][0])} has no history in the data")
    for chunk in pos.split(batch_size):
        yield datamodule.store.eval_batch(chunk.to(es.users.device), EvalSplit.FULL)


def new_user_slates(
    histories: Path, log: pl.DataFrame, logged: Path, prepared: Prepared, spec: SampleSpec, batch_size: int
) -> tuple[LoggedSlates, Iterator[EvalBatch]]:
    """The slates of ``log`` and batches of their users' histories read from ``histories`` (original ids).

    Only the logged users' histories are kept (memory follows the log, not the history file); slates come in
    the history file's order of users, and the batches hold one row per slate in that order. A history's
    items the model does not know are dropped; a user left with none is scored by the training popularity,
    as ``predict histories=`` serves them.

    Args:
        histories: The history file (``recsys_attn.serving.histories``).
        log: The checked log (``read_log``), ``logged`` its file (named in errors).
        prepared: The data: its user id dtype and the model's items.
        spec: How the model reads a history (``model.sample_spec``).
        batch_size: Histories a batch.

    Raises:
        LogError: naming the log's line of a user the history file does not hold.
    """
    refuse_untimed(spec, histories.name)
    wanted = log["user_id"].cast(prepared.users.schema["user_id"], strict=False).unique().drop_nulls()
    kept = [_rows_in(block, wanted) for block in read_histories(histories, prepared.users, prepared.items, READ_BLOCK)]
    block = _concat(kept, wanted.clear())  # [U] the logged users the file holds, in its order
    users = pl.DataFrame({"user_id": block.user_ids, "user_idx": pl.int_range(1, len(block) + 1, eager=True)})
    slates = index_log(log, users, prepared.items, logged, f"has no history in {histories}")
    es = block.eval_set()
    rows = slates.users - 1  # [S] the history of each slate's user
    batches = (eval_batch_of(block.values, es, chunk, spec, prepared.n_items) for chunk in rows.split(batch_size))
    return slates, batches


def _concat(blocks: list[HistoryBlock], no_users: pl.Series) -> HistoryBlock:
    """One block of the users of ``blocks``, in order (``no_users``, an empty id series, when there are none)."""
    long, int32 = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.int32)
    lengths = torch.cat([long, *(b.ends - b.starts for b in blocks)])  # [U]
    ends = torch.cumsum(lengths, 0)  # [U]
    values = torch.cat([int32, *(b.values for b in blocks)])  # [I]
    user_ids = pl.concat([no_users, *(b.user_ids for b in blocks)])  # [U]
    return HistoryBlock(user_ids, values, ends - lengths, ends, torch.cat([int32, *(b.n_unknown for b in blocks)]))


def _rows_in(block: HistoryBlock, wanted: pl.Series) -> HistoryBlock:
    """The users of ``block`` whose id is in ``wanted``, their items packed."""
    mask = block.user_ids.is_in(wanted)  # [U]
    keep = torch.from_numpy(mask.to_numpy().copy())  # [U] bool
    starts, ends = block.starts[keep], block.ends[keep]  # [U']
    lengths = ends - starts  # [U']
    new_ends = torch.cumsum(lengths, 0)  # [U']
    offset = torch.repeat_interleave(starts - (new_ends - lengths), lengths)  # [I'] old position - new position
    values = block.values[torch.arange(int(lengths.sum())) + offset]  # [I']
    return HistoryBlock(block.user_ids.filter(mask), values, new_ends - lengths, new_ends, block.n_unknown[keep])


def target_slots(
    model: RecModule, policy: Policy, batches: Iterable[EvalBatch], slates: LoggedSlates, reward: RewardModel
) -> TargetSlots:
    """``policy`` over ``model``'s scores on every logged slate, given the logged items above each rank.

    Args:
        model: The target recommender; run in eval mode on its own device (its mode is restored after).
        policy: How the target turns scores into slates.
        batches: Histories, one row per slate in the order of ``slates`` (``history_batches`` for the users of
            the data; any other source of ``EvalBatch`` rows, e.g. histories of new users, works the same).
        slates: The logged slates (internal indices).
        reward: The reward model ``q̂`` (its item rates index the model's score columns).
    """
    device = model.device
    rate = reward.item_rate.to(device)  # [V]
    props, expected, done = [], [], 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                batch = batch.to(device)
                items = slates.items[done : done + batch.users.shape[0]].to(device)  # [B, K]
                scores, _ = model.serving_scores(batch)  # [B, V] popularity for a user with no known item
                props.append(policy.propensities(scores, items).cpu())  # [B, K]
                expected.append(policy.expected(scores, items, rate).cpu())  # [B, K]
                done += items.shape[0]
    finally:
        model.train(was_training)
    if done != slates.items.shape[0]:
        raise ValueError(f"target_slots: the batches hold {done} histories for {slates.items.shape[0]} slates")
    k = slates.items.shape[1]
    empty = torch.zeros(0, k)  # [0, K]
    e = torch.cat(expected) if expected else empty  # [S, K]
    return TargetSlots(
        torch.cat(props) if props else empty,
        e * reward.rank_factor[:k],
        reward.predict(slates.items),
    )
