"""Top-K recommendations with original user and item ids, from any trained ``RecModule``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import polars as pl
import torch
from torch import Tensor

from recsys_attn.data.batches import EvalBatch, EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.prepared import Prepared
from recsys_attn.models.base import RecModule

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("user_id", "rank", "item_id", "score")


# Whose history each user's recommendations follow: the input of the validation or test set, or
# everything known about the user (``all``: every user, for serving).
HISTORIES: dict[str, EvalSplit] = {"val": EvalSplit.VAL, "test": EvalSplit.TEST, "all": EvalSplit.FULL}


def recommend(
    model: RecModule,
    datamodule: SeqDataModule,
    k: int = 10,
    max_users: int | None = None,
    history: str = "test",
    batch_size: int = 1024,
    users: Sequence[object] | None = None,
) -> pl.DataFrame:
    """The top ``k`` items for each user, with original user and item ids.

    Items the model cannot rank (padding, filtered history) are left out, so a user may get fewer
    than ``k`` rows.

    Args:
        model: A trained recommender; run in eval mode on its own device (its mode is restored after).
        datamodule: A set-up datamodule: its evaluation sets give the histories, ``prepared`` the id maps.
        k: Items per user.
        max_users: Only the first ``max_users`` users (all when None).
        history: ``test`` (the test set's users and inputs: all but their held-out test item), ``val``
            (all but the last two items) or ``all`` (every user, after everything they interacted with).
        batch_size: Users scored at once.
        users: Original user ids to recommend for (in this order); None = every user of ``history``.

    Returns:
        ``user_id``, ``rank`` (0 = best), ``item_id``, ``score``; users in order, then by rank.
    """
    prepared = datamodule.prepared
    if prepared is None:
        raise RuntimeError("recommend: the datamodule must be set up first (call datamodule.setup())")
    if history not in HISTORIES:
        raise ValueError(f"recommend: history must be one of {', '.join(HISTORIES)}, got {history!r}")
    if k < 1 or batch_size < 1:
        raise ValueError(f"recommend: k and batch_size must be >= 1, got k={k}, batch_size={batch_size}")
    if max_users is not None and max_users < 0:
        raise ValueError(f"recommend: max_users must be >= 0 or None, got {max_users}")
    datamodule.connect(model.sample_spec)  # histories cut as this model reads them (cloze: MASK appended)
    split = HISTORIES[history]
    es = datamodule.store.evals[split]
    rows = torch.arange(len(es)) if users is None else _rows_of(prepared, es.users.cpu(), users, history)  # [U]
    rows = rows[:max_users]
    k = min(k, model.n_items)

    device = model.device
    was_training = model.training
    model.eval()
    user_parts, items, scores = [], [], []
    try:
        with torch.no_grad():
            for chunk in rows.split(batch_size):
                built = datamodule.store.eval_batch(chunk.to(es.users.device), split)
                batch = EvalBatch(*(t.to(device) for t in built))
                top_items, top_scores = model.top_k(batch, k)  # [B, k]
                user_parts.append(batch.users[:, None].expand_as(top_items).cpu())
                items.append(top_items.cpu())
                scores.append(top_scores.cpu())
    finally:
        model.train(was_training)

    if not user_parts:
        return _empty(prepared)
    user_idx, item_idx, score = (torch.cat(parts).flatten() for parts in (user_parts, items, scores))  # [U * k]
    rank = torch.arange(k).repeat(user_idx.numel() // k)  # [U * k]
    keep = score > float("-inf")  # filtered items and padding are not recommendations
    return _with_original_ids(prepared, user_idx[keep], item_idx[keep], rank[keep], score[keep])


def _rows_of(prepared: Prepared, set_users: Tensor, users: Sequence[object], history: str) -> Tensor:
    """Rows of an evaluation set (whose ``user_idx`` are ``set_users``, ascending) for original user ids."""
    wanted = pl.DataFrame({"user_id": pl.Series(list(users), dtype=prepared.users.schema["user_id"], strict=False)})
    found = wanted.with_row_index("_order").join(prepared.users, on="user_id", how="left").sort("_order")
    idx = torch.from_numpy(found["user_idx"].fill_null(0).to_numpy().astype("int64"))  # [U], 0 = unknown
    pos = torch.searchsorted(set_users, idx).clamp(max=max(len(set_users) - 1, 0))  # [U]
    ok = (idx > 0) & (set_users[pos] == idx) if len(set_users) else torch.zeros_like(idx, dtype=torch.bool)
    if not bool(ok.all()):
        missing = [users[i] for i in torch.nonzero(~ok).flatten()[:10].tolist()]
        where = "in the data" if history == "all" else f"among the {history} set's users (try history=all)"
        raise ValueError(f"users: {int((~ok).sum())} id(s) not {where}, e.g. {missing}")
    return pos


def _with_original_ids(
    prepared: Prepared, user_idx: Tensor, item_idx: Tensor, rank: Tensor, score: Tensor
) -> pl.DataFrame:
    """Swap internal user and item indices for the original ids of ``prepared``, keeping row order."""
    frame = pl.DataFrame(
        {
            "user_idx": user_idx.numpy(),
            "rank": rank.numpy().astype("int32"),
            "item_idx": item_idx.numpy(),
            "score": score.numpy(),
        },
        schema_overrides={"user_idx": pl.Int64, "item_idx": pl.Int64},
    )
    return (
        frame.with_row_index("_row")
        .join(prepared.users, on="user_idx", how="left")
        .join(prepared.items, on="item_idx", how="left")
        .sort("_row")
        .select(COLUMNS)
    )


def _empty(prepared: Prepared) -> pl.DataFrame:
    """No recommendations, with the columns and dtypes of a full result."""
    return pl.DataFrame(
        schema={
            "user_id": prepared.users.schema["user_id"],
            "rank": pl.Int32,
            "item_id": prepared.items.schema["item_id"],
            "score": pl.Float32,
        }
    )
