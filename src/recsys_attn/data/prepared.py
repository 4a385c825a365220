"""The result of data preparation: remapped, chronologically sorted interactions and id maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from recsys_attn.data.errors import DataError

INTERACTION_COLUMNS: tuple[str, ...] = ("user_idx", "item_idx", "timestamp")


@dataclass(frozen=True)
class Prepared:
    """A prepared data set, ready for splitting.

    Attributes:
        interactions: ``user_idx`` (Int64, 1..n_users), ``item_idx`` (Int64, 1..n_items; 0 is
            padding), ``timestamp`` (Int64 microseconds since the epoch, UTC, nullable; see
            ``data.timestamps``). Sorted by ``user_idx``, then in time order:
            each user's rows are contiguous and chronological.
        users: ``user_idx`` and ``user_id`` (original id, original dtype), sorted by ``user_idx``.
        items: ``item_idx`` and ``item_id`` (original id, original dtype), sorted by ``item_idx``.
        meta: Counts (``n_users``, ``n_items``, ``n_interactions``), source and preparation
            settings, ``config_hash``, ``created_at`` and, once cached, ``cache_path``.
    """

    interactions: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        """Check that the three frames have their expected columns."""
        for name, frame, cols in (
            ("interactions", self.interactions, INTERACTION_COLUMNS),
            ("users", self.users, ("user_idx", "user_id")),
            ("items", self.items, ("item_idx", "item_id")),
        ):
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                raise DataError(f"Prepared.{name} lacks columns {missing}; it has {frame.columns}")

    @property
    def n_users(self) -> int:
        """Number of users; their ids are ``1..n_users``."""
        return self.users.height

    @property
    def n_items(self) -> int:
        """Number of items; their ids are ``1..n_items`` (0 is padding)."""
        return self.items.height

    @property
    def n_interactions(self) -> int:
        """Number of interactions kept."""
        return self.interactions.height
