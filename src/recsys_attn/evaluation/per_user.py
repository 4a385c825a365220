"""Per-user evaluation rows gathered across devices, each user exactly once."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

ROW_FIELDS = ("users", "history_len", "targets", "ranks")
"""What is kept per evaluated user: user_idx, history length, target item_idx, 0-based full-ranking rank."""


def unique_users(rows: dict[str, Tensor]) -> dict[str, Tensor]:
    """``rows`` with each user once (its first row), sorted by user: a user seen on two devices counts once."""
    users = rows["users"]  # [N]
    uniq, inverse = torch.unique(users, sorted=True, return_inverse=True)  # [U], [N]
    pos = torch.arange(users.numel(), device=users.device)  # [N]
    first = torch.full_like(uniq, users.numel()).scatter_reduce(0, inverse, pos, reduce="amin")  # [U]
    return {name: t[first] for name, t in rows.items()}


class PerUserRows(Metric):
    """Collects ``fields`` (:data:`ROW_FIELDS` by default; the first is ``users``) of every evaluated user;
    ``compute`` gathers all devices' rows (cat states)."""

    full_state_update = False

    def __init__(self, fields: tuple[str, ...] = ROW_FIELDS) -> None:
        super().__init__()
        if fields[0] != "users":
            raise ValueError(f"per-user rows are keyed by their first field, 'users' (got {fields})")
        self.fields = fields
        for name in fields:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, *values: Tensor) -> None:
        """One tensor ``[B]`` per field, in the order of ``fields``."""
        if len(values) != len(self.fields):
            raise ValueError(f"expected {len(self.fields)} tensors ({', '.join(self.fields)}), got {len(values)}")
        for name, value in zip(self.fields, values, strict=True):
            getattr(self, name).append(value.long())

    def compute(self) -> dict[str, Tensor]:
        """The rows of every device, one per user, sorted by user (empty tensors when nothing was evaluated)."""
        rows = {}
        for name in self.fields:
            state = getattr(self, name)
            empty = isinstance(state, list) and not state
            rows[name] = torch.zeros(0, dtype=torch.long, device=self.device) if empty else dim_zero_cat(state).long()
        return unique_users(rows)
