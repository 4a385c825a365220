"""Beyond-accuracy metrics of the top-K lists full ranking produced: coverage, exposure Gini, ARP, novelty.

Every state is a sum, so the values are exact on any number of devices. Popularity is an item's count among
training inputs (``item_popularity``); an item's self-information is ``-log2 p`` with the add-one share
``p = (count + 1) / (total count + n_items)``, so items never seen in training stay finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from recsys_attn.constants import PAD


def gini(exposure: Tensor) -> Tensor:
    """Gini index of exposure counts ``[n]`` over items: 0 = every item shown equally, (n-1)/n = one item only."""
    x = exposure.double().sort().values  # [n] ascending
    n = x.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)  # [n]
    total = x.sum()
    if n == 0 or float(total) == 0.0:
        return torch.tensor(0.0, dtype=torch.float64)
    return ((2.0 * i - n - 1.0) * x).sum() / (n * total)


def self_information(popularity: Tensor) -> Tensor:
    """``-log2 p`` of each item ``[n_items + 1]`` under the add-one popularity share (index 0 = PAD)."""
    counts = popularity.double().clone()  # [V]
    counts[PAD] = 0.0
    n_items = counts.numel() - 1
    share = (counts + 1.0) / (counts.sum() + n_items)  # [V]
    return -torch.log2(share)


class BeyondAccuracy(Metric):
    """Coverage@K, Gini@K, ARP@K and its ratio to the targets' popularity, novelty@K for each K of ``ks``.

    ``update`` takes each user's ranked list ``[B, >= max K]`` (PAD where fewer items were rankable), target
    ``[B]`` and the training counts ``[n_items + 1]``; ``compute`` returns ``coverage@K`` (share of items in
    anyone's top-K), ``gini@K``, ``arp@K``, ``arp_ratio@K``, ``novelty@K`` and ``target_popularity``.
    """

    full_state_update = False
    exposure: Tensor
    arp_sum: Tensor
    info_sum: Tensor
    users: Tensor
    target_pop_sum: Tensor

    def __init__(self, ks: Sequence[int], n_items: int) -> None:
        super().__init__()
        self.ks = sorted(set(ks))
        n_k, n_v = len(self.ks), n_items + 1
        self.add_state("exposure", torch.zeros(n_k, n_v, dtype=torch.float64), dist_reduce_fx="sum")  # [nK, V]
        self.add_state("arp_sum", torch.zeros(n_k, dtype=torch.float64), dist_reduce_fx="sum")  # [nK]
        self.add_state("info_sum", torch.zeros(n_k, dtype=torch.float64), dist_reduce_fx="sum")  # [nK]
        self.add_state("users", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("target_pop_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, top_items: Tensor, targets: Tensor, item_popularity: Tensor) -> None:
        pop = item_popularity.double()  # [V] training counts (the module's buffer, filled from a checkpoint)
        info = self_information(pop)  # [V]
        for j, k in enumerate(self.ks):
            items = top_items[:, :k]  # [B, k]
            real = (items != PAD).double()  # [B, k]
            n_real = real.sum(1).clamp_min(1.0)  # [B]
            self.exposure[j] += torch.bincount(items.flatten(), weights=real.flatten(), minlength=pop.numel())
            self.arp_sum[j] += ((pop[items] * real).sum(1) / n_real).sum()
            self.info_sum[j] += ((info[items] * real).sum(1) / n_real).sum()
        self.users += targets.numel()
        self.target_pop_sum += pop[targets].sum()

    def compute(self) -> dict[str, Tensor]:
        users = self.users.clamp_min(1.0)
        target_pop = self.target_pop_sum / users
        out: dict[str, Tensor] = {"target_popularity": target_pop.float()}
        n_items = self.exposure.shape[1] - 1
        for j, k in enumerate(self.ks):
            shown = self.exposure[j, 1:]  # [n_items] PAD is never an item
            arp = self.arp_sum[j] / users
            out[f"coverage@{k}"] = ((shown > 0).sum() / max(n_items, 1)).float()
            out[f"gini@{k}"] = gini(shown).float()
            out[f"arp@{k}"] = arp.float()
            out[f"arp_ratio@{k}"] = (arp / target_pop).float() if float(target_pop) > 0 else torch.tensor(float("nan"))
            out[f"novelty@{k}"] = (self.info_sum[j] / users).float()
        return out
