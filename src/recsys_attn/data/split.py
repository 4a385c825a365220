"""Train/validation/test splits of prepared interaction logs (see docs/PROTOCOL.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import polars as pl
import torch
from torch import Tensor

from recsys_attn.data.batches import ragged_coo
from recsys_attn.data.cold_items import hold_out_items, pick_cold_items
from recsys_attn.data.errors import DataError

SPLIT_KINDS = ("leave_one_out", "temporal")
_KIND_NAMES = {"next": "next-item"}  # sample kinds in messages


@dataclass(frozen=True)
class SplitConfig:
    """How interactions are divided into training inputs and held-out targets."""

    kind: str = "leave_one_out"
    """``leave_one_out`` (the default protocol) or ``temporal`` (global timestamp quantiles)."""
    val_quantile: float = 0.9
    """Temporal only: interactions at or after this timestamp quantile are held out."""
    test_quantile: float = 0.95
    """Temporal only: the first interaction at or after this quantile is a user's test target."""
    cold_items: float = 0.0
    """Share of the catalogue held out as cold items: their interactions are removed, but
    where one is the last item of a user who keeps enough items to be tested on it (leave-one-out only; 0 = off;
    ``data.cold_items``)."""
    cold_seed: int = 0
    """Seeds the draw of the cold items (apart from the run's seed: every seed of a study has the same ones)."""

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise DataError(f"data.split.kind: unknown split {self.kind!r}, expected one of {SPLIT_KINDS}")
        if not 0.0 <= self.cold_items < 1.0:
            raise DataError(f"data.split.cold_items: expected a share in [0, 1), got {self.cold_items}")
        if self.cold_items and self.kind != "leave_one_out":
            raise DataError(
                "data.split.cold_items holds items out of a leave-one-out split (a cold item is a user's last); "
                f"data.split.kind={self.kind} does not take it: set data.split.cold_items=0"
            )
        if not 0.0 < self.val_quantile < self.test_quantile < 1.0:
            raise DataError(
                "data.split: expected 0 < val_quantile < test_quantile < 1, got "
                f"{self.val_quantile} and {self.test_quantile}"
            )


@dataclass(frozen=True)
class EvalSet:
    """Held-out targets; each user's input history is ``values[starts:ends]``, the target ``values[ends]``."""

    users: Tensor  # [E] user_idx
    starts: Tensor  # [E]
    ends: Tensor  # [E] exclusive
    targets: Tensor  # [E] item_idx
    user_ends: Tensor  # [E] exclusive end of the user's whole sequence (items after the target included)

    def __len__(self) -> int:
        return int(self.users.numel())

    def map(self, fn: Callable[[Tensor], Tensor]) -> EvalSet:
        """The same set with ``fn`` applied to every tensor (slicing, moving to a device)."""
        return EvalSet(*(fn(getattr(self, f.name)) for f in fields(self)))

    def rows_of(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """Rows ``[S]`` of this set for ``user_idx`` values ``[S]``, and whether each user is in it ``[S]``."""
        known = self.users.cpu()  # [E] ascending
        if not len(known):
            return torch.zeros_like(users), torch.zeros_like(users, dtype=torch.bool)
        pos = torch.searchsorted(known, users).clamp(max=len(known) - 1)  # [S]
        return pos, known[pos] == users

    def subset(self, n: int | None) -> EvalSet:
        """The first ``n`` users (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return self.map(lambda t: t[:n])


@dataclass(frozen=True)
class Splits:
    """All users' chronological items in one flat tensor, and views into it."""

    values: Tensor  # [N] item ids, users concatenated in user_idx order
    train_starts: Tensor  # [T] start of each training sequence (users with >= 1 training item)
    train_ends: Tensor  # [T] exclusive end
    val: EvalSet
    test: EvalSet
    n_items: int
    # Every user's whole sequence as history and no held-out item (targets 0): for serving
    # recommendations after all that is known, never for training or metrics.
    full: EvalSet
    cold: Tensor  # [n_items + 1] bool: the items data.split.cold_items held out (all False without it)
    times: Tensor | None = None  # [N] seconds since the epoch of each of ``values`` (None: some have no timestamp)
    untimed: int = 0
    """Interactions without a timestamp (``times`` is None when there is one)."""

    def item_popularity(self) -> Tensor:
        """Count of each item among training inputs only: ``[n_items + 1]``, index 0 = padding."""
        _, items = ragged_coo(self.values, self.train_starts, self.train_ends)  # [sum of lengths]
        return torch.bincount(items, minlength=self.n_items + 1)


def split_interactions(interactions: pl.DataFrame, n_items: int, config: SplitConfig) -> Splits:
    """Split a sorted log (``user_idx`` contiguous and chronological) into train/val/test views."""
    all_users = interactions["user_idx"].to_torch()  # [N] before any row is held out: every user stays known
    n_users = int(all_users.max()) if all_users.numel() else 0
    cold = pick_cold_items(n_items, config.cold_items, config.cold_seed)  # [n_items + 1]
    if config.cold_items:
        interactions = hold_out_items(interactions, cold)
    values = interactions["item_idx"].to_torch().long()  # [N]
    stamps = interactions["timestamp"]
    untimed = stamps.null_count()
    times = (stamps.to_torch() // 1_000_000).long() if untimed == 0 else None  # [N] microseconds -> seconds
    users = interactions["user_idx"].to_torch().long()  # [N]
    counts = torch.bincount(users, minlength=n_users + 1)[1:]  # [U]
    starts = torch.cumsum(counts, 0) - counts  # [U]
    user_ids = torch.arange(1, n_users + 1)  # [U]
    if config.kind == "leave_one_out":
        evaluated = counts >= 3  # [U]
        n_train = torch.where(evaluated, counts - 2, counts)
        val_pos = torch.where(evaluated, starts + counts - 2, -1)
        test_pos = torch.where(evaluated, starts + counts - 1, -1)
    else:
        n_train, val_pos, test_pos = _temporal_positions(interactions, users, counts, starts, config)

    def eval_set(pos: Tensor) -> EvalSet:
        keep = pos >= 0
        return EvalSet(user_ids[keep], starts[keep], pos[keep], values[pos[keep]], (starts + counts)[keep])

    has_train = n_train > 0
    return Splits(
        values=values,
        train_starts=starts[has_train],
        train_ends=(starts + n_train)[has_train],
        val=eval_set(val_pos),
        test=eval_set(test_pos),
        n_items=n_items,
        full=EvalSet(user_ids, starts, starts + counts, torch.zeros_like(user_ids), starts + counts),
        cold=cold,
        times=times,
        untimed=untimed,
    )


def _temporal_positions(
    interactions: pl.DataFrame, users: Tensor, counts: Tensor, starts: Tensor, config: SplitConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Per user: training length, validation and test target positions (-1 = none)."""
    ts_col = interactions["timestamp"]
    if ts_col.null_count() > 0:
        raise DataError(
            "data.split.kind=temporal needs timestamps, but this data set has none "
            "(use a source format with a timestamp column, or kind=leave_one_out)"
        )
    ts = ts_col.to_torch().double()  # [N]
    t_val, t_test = torch.quantile(ts, torch.tensor([config.val_quantile, config.test_quantile]).double())
    n_users = counts.numel()
    before_val = torch.bincount(users, weights=(ts < t_val).double(), minlength=n_users + 1)[1:].long()
    before_test = torch.bincount(users, weights=(ts < t_test).double(), minlength=n_users + 1)[1:].long()
    has_val = (before_test > before_val) & (before_val >= 1)
    has_test = (counts > before_test) & (before_test >= 1)
    val_pos = torch.where(has_val, starts + before_val, -1)
    test_pos = torch.where(has_test, starts + before_test, -1)
    return before_val, val_pos, test_pos


# --------------------------------------------------------------------------------------------
# A part of the split with no user: one line saying what a user needs and what to change.


def check_held_out(splits: Splits, config: SplitConfig, part: str, where: str, relax: str = "") -> None:
    """Raise ``DataError`` when the ``part`` (``validation`` or ``test``) of ``splits`` holds no user.

    Args:
        splits: The split data.
        config: How it was split (the message says what a user needs under it).
        part: ``validation`` or ``test``.
        where: The data file, for the message.
        relax: Preparation settings that shortened the histories (``relax_advice``), appended to the advice.
    """
    held_out = splits.val if part == "validation" else splits.test
    if len(held_out):
        return
    if config.kind == "leave_one_out":
        lengths = splits.full.ends - splits.full.starts  # [U]
        longest = int(lengths.max()) if lengths.numel() else 0
        why = (
            "leave-one-out holds out a user's last 2 items and needs 1 before them: 3 interactions; the longest "
            f"history has {longest} after preparation"
        )
        fix = f"use a larger log{relax}"
    elif part == "validation":
        why = (
            f"data.split.kind=temporal needs a user with an interaction before the val_quantile={config.val_quantile} "
            f"timestamp quantile and one from there to the test_quantile={config.test_quantile} quantile"
        )
        fix = "lower data.split.val_quantile, or use data.split.kind=leave_one_out"
    else:
        why = (
            "data.split.kind=temporal needs a user with an interaction before the "
            f"test_quantile={config.test_quantile} timestamp quantile and one at or after it"
        )
        fix = "lower data.split.test_quantile, or use data.split.kind=leave_one_out"
    raise DataError(f"data: no user of {where} has enough interactions for a {part} item ({why}); {fix}")


def check_trainable(
    splits: Splits,
    config: SplitConfig,
    min_items: int,
    kind: str,
    where: str,
    relax: str = "",
    max_users: int | None = None,
) -> None:
    """Raise ``DataError`` when no user's training part has the ``min_items`` that a ``kind`` sample needs.

    Args:
        splits: The split data.
        config: How it was split (what a user's training part is).
        min_items: Training items a sequence needs to yield a sample (``SampleSpec.min_items``).
        kind: The kind of samples, for the message (``next``, ``cloze``).
        where: The data file, for the message.
        relax: Preparation settings that shortened the histories (``relax_advice``), appended to the advice.
        max_users: Only the first ``max_users`` training sequences are used (``data.max_train_users``).
    """
    lengths = (splits.train_ends - splits.train_starts)[:max_users]  # [T]
    longest = int(lengths.max()) if lengths.numel() else 0
    if longest >= min_items:
        return
    among = "" if max_users is None else f" among the first data.max_train_users={max_users}"
    fix = "use a larger log" + ("" if max_users is None else " or raise data.max_train_users")
    if config.kind == "leave_one_out":
        part = "under leave-one-out all of a user's items, or all but the last 2 when there are 3 or more"
    else:
        part = f"under temporal splits the items before the val_quantile={config.val_quantile} timestamp quantile"
        fix += " or raise data.split.val_quantile"
    raise DataError(
        f"data: no user of {where} has enough interactions for a training sample ({_KIND_NAMES.get(kind, kind)} "
        f"samples need {min_items} items in a user's training part, {part}; the longest training part{among} has "
        f"{longest}); {fix}{relax}"
    )
