"""Top-K recommendations with original user and item ids, from any trained ``RecModule``."""

from __future__ import annotations

import logging

import polars as pl
import torch
from torch import Tensor

from recsys_attn.data.batches import EvalBatch
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.prepared import Prepared
from recsys_attn.models.base import RecModule

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("user_id", "rank", "item_id", "score")


def recommend(
    model: RecModule,
    datamodule: SeqDataModule,
    k: int = 10,
    max_users: int | None = None,
    split: int = 1,
    batch_size: int = 1024,
) -> pl.DataFrame:
    """The top ``k`` items for the users of an evaluation set, with original ids.

    Each user's input is their history before the held-out item of ``split`` (0 = validation, 1 = test:
    the full known history). Items the model cannot rank (padding, filtered history) are left out, so a
    user may get fewer than ``k`` rows.

    Args:
        model: A trained recommender; run in eval mode on its own device (its mode is restored after).
        datamodule: A set-up datamodule: its evaluation sets give the histories, ``prepared`` the id maps.
        k: Items per user.
        max_users: Only the first ``max_users`` users of the evaluation set (all when None).
        split: 0 = validation, 1 = test histories.
        batch_size: Users scored at once.

    Returns:
        ``user_id``, ``rank`` (0 = best), ``item_id``, ``score``; users in evaluation-set order, then by rank.
    """
    prepared = datamodule.prepared
    if prepared is None:
        raise RuntimeError("recommend: the datamodule must be set up first (call datamodule.setup())")
    if split not in (0, 1):
        raise ValueError(f"recommend: split must be 0 (validation) or 1 (test), got {split}")
    if k < 1 or batch_size < 1:
        raise ValueError(f"recommend: k and batch_size must be >= 1, got k={k}, batch_size={batch_size}")
    if max_users is not None and max_users < 0:
        raise ValueError(f"recommend: max_users must be >= 0 or None, got {max_users}")
    k = min(k, model.n_items)
    n_users = len(datamodule.store.evals[split])
    if max_users is not None:
        n_users = min(n_users, max_users)

    device = model.device
    was_training = model.training
    model.eval()
    users, items, scores = [], [], []
    try:
        with torch.no_grad():
            for start in range(0, n_users, batch_size):
                idx = torch.arange(start, min(start + batch_size, n_users))  # [B]
                batch = EvalBatch(*(t.to(device) for t in datamodule.store.eval_batch(idx, split)))
                top_items, top_scores = model.top_k(batch, k)  # [B, k]
                users.append(batch.users[:, None].expand_as(top_items).cpu())
                items.append(top_items.cpu())
                scores.append(top_scores.cpu())
    finally:
        model.train(was_training)

    if not users:
        return _empty(prepared)
    user_idx, item_idx, score = (torch.cat(parts).flatten() for parts in (users, items, scores))  # [U * k]
    rank = torch.arange(k).repeat(user_idx.numel() // k)  # [U * k]
    keep = score > float("-inf")  # filtered items and padding are not recommendations
    return _with_original_ids(prepared, user_idx[keep], item_idx[keep], rank[keep], score[keep])


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
