"""Cold items held out of training: the split option that shows how a model ranks items nobody trained on.

``data.split.cold_items=0.1`` picks a share of the catalogue (uniformly, seeded by ``data.split.cold_seed``) and
removes every interaction with those items from the log, except where one is the last interaction of a user who
keeps enough items to be tested: there it stays, as that user's test target. Under leave-one-out the training
inputs and validation targets then never hold a cold item, and the users whose test target is cold are those a
cold-start evaluation ranks (``test_cold/*``: the target among the cold items only; ``evaluation.cold``).
"""

from __future__ import annotations

import polars as pl
import torch
from torch import Tensor


def pick_cold_items(n_items: int, share: float, seed: int) -> Tensor:
    """``[n_items + 1]`` bool: True for the ``round(share * n_items)`` items drawn as cold (never row 0)."""
    cold = torch.zeros(n_items + 1, dtype=torch.bool)  # [n_items + 1]
    n_cold = round(share * n_items)
    if n_cold:
        drawn = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed))[:n_cold] + 1  # [C]
        cold[drawn] = True
    return cold


LEAVE_ONE_OUT_MIN = 3
"""Items a user needs to be tested under leave-one-out (a training item, the validation and the test target)."""


def hold_out_items(interactions: pl.DataFrame, cold: Tensor) -> pl.DataFrame:
    """``interactions`` (sorted by user, chronological) without the ``cold`` ``[n_items + 1]`` items' rows, but a
    user's last row when the user is tested on it (it keeps ``LEAVE_ONE_OUT_MIN`` items; a shorter history trains
    on all its items, so its cold last item goes too)."""
    cold_ids = pl.Series("item_idx", torch.nonzero(cold).squeeze(1).numpy(), dtype=pl.Int64)  # [C]
    warm = ~pl.col("item_idx").is_in(cold_ids.implode())
    last = pl.col("user_idx") != pl.col("user_idx").shift(-1, fill_value=-1)  # a user's last row
    tested = warm.sum().over("user_idx") + 1 >= LEAVE_ONE_OUT_MIN  # the user keeps enough items with its last
    return interactions.filter(warm | (last & tested))
