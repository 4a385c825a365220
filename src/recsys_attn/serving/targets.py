"""The target policy on logged slates: a model's scores after each user's history, as OPE needs them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from recsys_attn.data.batches import EvalBatch, EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.errors import RecsysError, TrainingError
from recsys_attn.models.base import RecModule
from recsys_attn.serving.ope_estimators import LoggedSlates, RewardModel, TargetSlots
from recsys_attn.serving.policies import Policy


def history_batches(datamodule: SeqDataModule, users: Tensor, batch_size: int) -> Iterator[EvalBatch]:
    """Batches of the whole histories in the data (``history=all``) of ``users`` ``[S]`` (user_idx), in order."""
    es = datamodule.store.evals[EvalSplit.FULL]
    pos, found = es.rows_of(users)  # [S], [S]
    if not bool(found.all()):
        raise RecsysError(f"logged: user_idx {int(users[~found][0])} has no history in the data")
    for chunk in pos.split(batch_size):
        yield datamodule.store.eval_batch(chunk.to(es.users.device), EvalSplit.FULL)


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
                batch = EvalBatch(*(t.to(device) for t in batch))
                items = slates.items[done : done + batch.users.shape[0]].to(device)  # [B, K]
                scores = model._rankable(model.score(batch.input), batch)  # [B, V]
                if bool(scores.isnan().any()):
                    raise TrainingError("the model scores items as NaN (diverged weights); retrain with a lower lr")
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
