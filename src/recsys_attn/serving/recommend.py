"""Recommendations with original user and item ids from any trained ``RecModule``, drawn by a policy.

Users come from the datamodule (``known_users``: an evaluation view of the data) or from a history file
(``new_users``); both become the same ``EvalBatch`` (one code path cuts every model input). ``serve`` scores
them batch by batch and yields one polars frame per batch, so a caller can stream millions of users to disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import polars as pl
import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.data.batches import EvalBatch, EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.samples import SampleSpec
from recsys_attn.data.sampling import batch_seed
from recsys_attn.data.split import EvalSet
from recsys_attn.data.store import eval_batch_of
from recsys_attn.evaluation.cold import cold_items_of
from recsys_attn.models.base import RecModule
from recsys_attn.serving.histories import HistoryBlock, read_histories, refuse_untimed
from recsys_attn.serving.policies import Greedy, Policy

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("user_id", "rank", "item_id", "score", "propensity", "n_unknown", "fallback", "cold")
"""``cold``: the item is in the catalogue but no training sequence holds it (it is ranked through its features)."""

# Whose history each user's recommendations follow: the input of the validation or test set, or
# everything known about the user (``all``: every user, for serving).
HISTORIES: dict[str, EvalSplit] = {"val": EvalSplit.VAL, "test": EvalSplit.TEST, "all": EvalSplit.FULL}

DRAW_BLOCK = 64
"""Users whose draws share one random generator, seeded by ``(seed, block number)``: a policy's draws for a
user depend on the seed and the user's place in the input only, never on ``batch_size``."""


class ServeInput(NamedTuple):
    """A batch of users to serve."""

    batch: EvalBatch  # the model input of B users (on the CPU)
    user_ids: pl.Series  # [B] original user ids
    n_unknown: Tensor  # [B] int32 history items unknown to the model (dropped)


@dataclass
class ServeSummary:
    """What a run served, counted as the batches go by."""

    users: int = 0
    rows: int = 0
    unknown_items: int = 0
    """History items unknown to the model, dropped."""
    users_with_unknown: int = 0
    fallback_users: int = 0
    """Users with no known history item, served the popularity ranking."""


def output_schema(prepared: Prepared) -> dict[str, pl.DataType]:
    """Columns and dtypes of the recommendations (the id dtypes are the data's)."""
    return {
        "user_id": prepared.users.schema["user_id"],
        "rank": pl.Int32(),
        "item_id": prepared.items.schema["item_id"],
        "score": pl.Float32(),
        "propensity": pl.Float32(),
        "n_unknown": pl.Int32(),
        "fallback": pl.Boolean(),
        "cold": pl.Boolean(),
    }


def check_sizes(k: int, batch_size: int, max_users: int | None) -> None:
    """Raise ``ValueError`` (naming the argument) for a ``k``, ``batch_size`` or ``max_users`` out of range."""
    if k < 1 or batch_size < 1:
        raise ValueError(f"recommend: k and batch_size must be >= 1, got k={k}, batch_size={batch_size}")
    if max_users is not None and max_users < 0:
        raise ValueError(f"recommend: max_users must be >= 0 or None, got {max_users}")


def known_users(
    datamodule: SeqDataModule,
    spec: SampleSpec,
    history: str = "test",
    users: Sequence[object] | None = None,
    max_users: int | None = None,
    batch_size: int = 1024,
) -> Iterator[ServeInput]:
    """Batches of the datamodule's users after their ``history`` (``val``, ``test`` or ``all``; see ``HISTORIES``).

    ``users`` picks original user ids (in this order; an unknown one raises ``ValueError`` here, before any batch).
    """
    prepared = datamodule.prepared
    if prepared is None:
        raise RuntimeError("recommend: the datamodule must be set up first (call datamodule.setup())")
    if history not in HISTORIES:
        raise ValueError(f"recommend: history must be one of {', '.join(HISTORIES)}, got {history!r}")
    datamodule.connect(spec)  # histories cut as this model reads them (cloze: MASK appended)
    split = HISTORIES[history]
    es = datamodule.store.evals[split]
    rows = torch.arange(len(es)) if users is None else _rows_of(prepared, es, users, history)  # [U]
    rows = rows[:max_users]
    user_table = prepared.users["user_id"]  # row i holds user_idx i + 1

    def batches() -> Iterator[ServeInput]:
        for chunk in rows.split(batch_size):
            batch = datamodule.store.eval_batch(chunk.to(es.users.device), split)
            ids = user_table.gather((batch.users.cpu() - 1).numpy())  # [B]
            yield ServeInput(batch, ids, torch.zeros(len(ids), dtype=torch.int32))

    return batches()


def new_users(blocks: Iterable[HistoryBlock], spec: SampleSpec, n_items: int, batch_size: int) -> Iterator[ServeInput]:
    """Batches of users read from a history file, cut into model inputs exactly as the datamodule's own."""
    refuse_untimed(spec, "a history file")
    for block in blocks:
        es = block.eval_set()
        for chunk in torch.arange(len(block)).split(batch_size):
            batch = eval_batch_of(block.values, es, chunk, spec, n_items)
            yield ServeInput(batch, block.user_ids.gather(chunk.numpy()), block.n_unknown[chunk])


class _Scored(NamedTuple):
    """Users scored and not drawn for yet."""

    ranked: Tensor  # [B, n_items + 1] servable scores (-inf: not servable), on the model's device
    user_ids: pl.Series  # [B]
    n_unknown: Tensor  # [B] int32
    fallback: Tensor  # [B] bool: no known history item, popularity scores

    def split(self, n: int) -> tuple[_Scored, _Scored]:
        head = _Scored(self.ranked[:n], self.user_ids[:n], self.n_unknown[:n], self.fallback[:n])
        tail = _Scored(self.ranked[n:], self.user_ids[n:], self.n_unknown[n:], self.fallback[n:])
        return head, tail

    def cat(self, other: _Scored) -> _Scored:
        return _Scored(
            torch.cat([self.ranked, other.ranked]),
            pl.concat([self.user_ids, other.user_ids]),
            torch.cat([self.n_unknown, other.n_unknown]),
            torch.cat([self.fallback, other.fallback]),
        )


def serve(
    model: RecModule,
    inputs: Iterable[ServeInput],
    item_ids: pl.Series,
    k: int = 10,
    policy: Policy | None = None,
    seed: int = 0,
    summary: ServeSummary | None = None,
) -> Iterator[pl.DataFrame]:
    """The ``k`` items ``policy`` (default greedy) draws for each user of ``inputs``: one frame per batch (``COLUMNS``).

    Users without a known history item get the model's training popularity as scores (``fallback``). A user
    with fewer than ``k`` servable items gets fewer rows. Draws are seeded per ``DRAW_BLOCK`` users from ``seed``.

    Args:
        model: Run in eval mode on its own device; its mode is restored when the frames are exhausted.
        inputs: The users, in order.
        item_ids: The data's original item ids, row ``i`` holding ``item_idx`` ``i + 1``.
        k: Items per user (at most the catalogue).
        policy: How items are drawn from the scores; None = greedy (the best ``k``, propensity 1).
        seed: Seeds every draw.
        summary: Counts what was served, when given.
    """
    policy = policy or Greedy()
    k = min(k, model.n_items)
    summary = summary if summary is not None else ServeSummary()
    was_training = model.training
    model.eval()
    try:
        pending: _Scored | None = None  # fewer than DRAW_BLOCK users, waiting for the rest of their block
        cold = cold_items_of(model.item_popularity.cpu())  # [n_items + 1]
        drawn = 0  # users drawn for so far: a multiple of DRAW_BLOCK until the last frame
        batches = iter(inputs)
        upcoming = next(batches, None)
        while upcoming is not None:
            scored = _score(model, upcoming)
            upcoming = next(batches, None)  # a look ahead: the last batch takes its partial block along
            scored = scored if pending is None else pending.cat(scored)
            n = len(scored.user_ids)
            ready, pending = scored.split(n if upcoming is None else n // DRAW_BLOCK * DRAW_BLOCK)
            if len(ready.user_ids):
                yield _draw(ready, item_ids, cold, k, policy, seed, drawn // DRAW_BLOCK, summary)
                drawn += len(ready.user_ids)
    finally:
        model.train(was_training)


def _score(model: RecModule, served: ServeInput) -> _Scored:
    """Servable scores of a batch: the model's, or its training popularity for users with no known item."""
    batch = served.batch.to(model.device)
    with torch.no_grad():
        ranked, fallback = model.serving_scores(batch)  # [B, n_items + 1], [B]
    return _Scored(ranked, served.user_ids, served.n_unknown.cpu(), fallback.cpu())


def _draw(
    scored: _Scored,
    item_ids: pl.Series,
    cold: Tensor,
    k: int,
    policy: Policy,
    seed: int,
    first_block: int,
    summary: ServeSummary,
) -> pl.DataFrame:
    """The policy's items for ``scored`` (starting at draw block ``first_block``) as a frame of ``COLUMNS``
    (``cold`` ``[n_items + 1]``: the items without a training interaction)."""
    items, propensities = [], []
    with torch.no_grad():
        for i, block in enumerate(scored.ranked.split(DRAW_BLOCK)):  # [<= DRAW_BLOCK, n_items + 1]
            generator = torch.Generator(device=block.device).manual_seed(batch_seed(seed, first_block + i))
            drawn, propensity = policy.draw(block, k, generator)  # [b, k], [b, k]
            items.append(drawn)
            propensities.append(propensity)
        item = torch.cat(items)  # [B, k]
        score = scored.ranked.gather(1, item)  # [B, k]
    item, score, propensity = item.cpu(), score.cpu(), torch.cat(propensities).cpu()  # [B, k]
    n, width = item.shape
    keep = item != PAD  # [B, k] trailing PAD: fewer than k servable items
    row = torch.arange(n)[:, None].expand(n, width)[keep]  # [R]
    rank = torch.arange(width)[None, :].expand(n, width)[keep]  # [R]
    summary.users += n
    summary.rows += int(keep.sum())
    summary.unknown_items += int(scored.n_unknown.sum())
    summary.users_with_unknown += int((scored.n_unknown > 0).sum())
    summary.fallback_users += int(scored.fallback.sum())
    return pl.DataFrame(
        {
            "user_id": scored.user_ids.gather(row.numpy()),
            "rank": rank.numpy().astype("int32"),
            "item_id": item_ids.gather((item[keep] - 1).numpy()),
            "score": score[keep].float().numpy(),
            "propensity": propensity[keep].float().numpy(),
            "n_unknown": scored.n_unknown[row].numpy().astype("int32"),
            "fallback": scored.fallback[row].numpy(),
            "cold": cold[item[keep]].numpy(),
        }
    )


def recommend(
    model: RecModule,
    datamodule: SeqDataModule,
    k: int = 10,
    max_users: int | None = None,
    history: str = "test",
    batch_size: int = 1024,
    users: Sequence[object] | None = None,
    histories: str | Path | None = None,
    policy: Policy | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """The ``k`` items for each user, with original user and item ids, in one frame.

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
        histories: A history file of users in original ids (``serving.histories``) to serve instead of the
            datamodule's users (``history`` and ``users`` then do not apply).
        policy: How the items are drawn from the scores (None: greedy, the best ``k``).
        seed: Seeds the policy's draws.

    Returns:
        ``COLUMNS``: users in order, then by rank (0 = first served).
    """
    check_sizes(k, batch_size, max_users)
    prepared = datamodule.prepared
    if prepared is None:
        raise RuntimeError("recommend: the datamodule must be set up first (call datamodule.setup())")
    if histories is None:
        inputs = known_users(datamodule, model.sample_spec, history, users, max_users, batch_size)
    elif users is not None:
        raise ValueError("recommend: users picks the data's users; a history file says whose histories it holds")
    else:
        blocks = read_histories(Path(histories), prepared.users, prepared.items, batch_size, max_users)
        inputs = new_users(blocks, model.sample_spec, model.n_items, batch_size)
    frames = list(serve(model, inputs, prepared.items["item_id"], k, policy, seed))
    return pl.concat(frames) if frames else pl.DataFrame(schema=output_schema(prepared))


def _rows_of(prepared: Prepared, es: EvalSet, users: Sequence[object], history: str) -> Tensor:
    """Rows of the evaluation set ``es`` for original user ids."""
    wanted = pl.DataFrame({"user_id": pl.Series(list(users), dtype=prepared.users.schema["user_id"], strict=False)})
    found = wanted.with_row_index("_order").join(prepared.users, on="user_id", how="left").sort("_order")
    idx = torch.from_numpy(found["user_idx"].fill_null(0).to_numpy().astype("int64"))  # [U], 0 = unknown
    pos, found_in_set = es.rows_of(idx)  # [U], [U]
    ok = (idx > 0) & found_in_set  # [U]
    if not bool(ok.all()):
        missing = [users[i] for i in torch.nonzero(~ok).flatten()[:10].tolist()]
        where = "in the data" if history == "all" else f"among the {history} set's users (try history=all)"
        raise ValueError(f"users: {int((~ok).sum())} id(s) not {where}, e.g. {missing}")
    return pos
