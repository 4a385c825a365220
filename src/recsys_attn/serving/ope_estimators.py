"""Off-policy estimates of a slate policy's value from logged slates, with bootstrap intervals over users.

**Value.** The value of a policy π is the expected sum of the rewards of one slate, over the logged users
(each after their history) and the logged slate lengths: ``V(π) = E_x[Σ_{r < L(x)} E_π[y_r | x]]``.

**Assumption.** The reward at rank r may depend on the user, on the item at r and on the items *above* it,
never on the items below (a cascade-like reading: a user looks down the slate). Position-based and
cascade click models satisfy it. Under it the estimators below are unbiased (IPS, DR) or consistent
(SNIPS) whenever the logging policy gives positive probability to every choice the target can make.

**Weights.** For logged slot (slate s, rank r) with item ``a_r``, logged propensity ``μ_r`` = P_logging(a_r |
x, a_<r) and target propensity ``π_r`` = P_π(a_r | x, a_<r) (the target scoring the logged slate),
``ρ_r = π_r / μ_r`` and the prefix weight ``W_r = ρ_0 · ρ_1 ⋯ ρ_r``; ``E_μ[W_r y_r] = E_π[y_r]`` exactly.
(A weight ``ρ_r`` alone would condition on the *logged* items above and estimate another policy.)

- ``logged``: ``mean_s Σ_r y_{s,r}``, the logging policy's own value (no reweighting).
- ``ips``: ``mean_s Σ_r W_{s,r} y_{s,r}``.
- ``snips``: ``Σ_r p_r · Σ_s W_{s,r} y_{s,r} / Σ_s W_{s,r}`` (sums over the slates that reach rank r, ``p_r``
  their share): each rank self-normalised; a rank whose weights are all 0 adds 0.
- ``dr``: ``mean_s Σ_r [W_{s,r} (y_{s,r} − q̂(a_{s,r}, r)) + W_{s,r−1} E_π[q̂(a, r) | x_s, a_{s,<r}]]``,
  ``W_{s,−1} = 1``: per-decision doubly robust, unbiased for any reward model ``q̂`` (its errors cancel in
  expectation) and of lower variance the better ``q̂`` is.

**Reward model** ``q̂(a, r) = κ_r θ_a`` (one step of a position-based model): ``κ_r`` = mean reward at rank r
over the mean reward of all slots, ``θ_a = (clicks_a + α ȳ) / (Σ_{slots of a} κ_r + α)`` with ``α =
PRIOR_IMPRESSIONS`` pseudo-impressions at the overall mean ``ȳ`` (unserved items get ``ȳ``). It is fit on the
same log (no cross-fitting), which biases DR negligibly for large logs.

**Intervals**: percentile bootstrap over users (one slate per user), seeded, vectorised.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl
import torch
from torch import Tensor

from recsys_attn.evaluation.bootstrap import resampled_means

PRIOR_IMPRESSIONS = 10.0
"""Pseudo-impressions at the mean reward that shrink a rarely served item's rate in the reward model."""

ESTIMATORS = ("logged", "ips", "snips", "dr")


class LoggedSlates(NamedTuple):
    """Served slates in internal indices, one per user; ``[S, K]`` with K the longest slate."""

    users: Tensor  # [S] user_idx of each slate
    items: Tensor  # [S, K] item_idx at each rank, PAD past the slate's end
    propensity: Tensor  # [S, K] the logging policy's P(item at rank | items above), 1 past the end
    reward: Tensor  # [S, K] 0 past the end
    shown: Tensor  # [S, K] bool: a logged slot (ranks 0..L_s - 1)


class TargetSlots(NamedTuple):
    """The target policy on each logged slot, given the logged items above it."""

    propensity: Tensor  # [S, K] P_π(logged item at this rank | logged items above)
    expected_reward: Tensor  # [S, K] E_π[q̂(a, r) | logged items above], the reward model under π
    predicted_reward: Tensor  # [S, K] q̂(logged item, r)


class RewardModel(NamedTuple):
    """``q̂(a, r) = rank_factor[r] * item_rate[a]``."""

    item_rate: Tensor  # [V] θ_a, per item column (0 = PAD)
    rank_factor: Tensor  # [K] κ_r

    def predict(self, items: Tensor) -> Tensor:
        """``q̂`` of the items ``[S, K]`` at their ranks (column = rank)."""
        return self.item_rate[items] * self.rank_factor[: items.shape[1]]  # [S, K]


class Estimate(NamedTuple):
    value: float
    lo: float
    hi: float


def fit_reward_model(slates: LoggedSlates, n_columns: int, prior: float = PRIOR_IMPRESSIONS) -> RewardModel:
    """The position-based reward model of the module docstring, fit on the logged slots (``n_columns`` = V)."""
    shown = slates.shown  # [S, K]
    y = torch.where(shown, slates.reward.double(), 0.0)  # [S, K]
    n_r = shown.sum(0).double()  # [K] slots per rank
    mean = y.sum() / n_r.sum().clamp(min=1)  # ȳ
    by_rank = y.sum(0) / n_r.clamp(min=1)  # [K]
    kappa = by_rank / mean if float(mean) > 0 else torch.ones_like(by_rank)  # [K]
    exposure = torch.zeros(n_columns, dtype=torch.float64).index_add_(
        0, slates.items[shown], kappa.expand_as(y)[shown]
    )  # [V] Σ κ_r over the slots of each item
    clicks = torch.zeros(n_columns, dtype=torch.float64).index_add_(0, slates.items[shown], y[shown])  # [V]
    theta = (clicks + prior * mean) / (exposure + prior)  # [V]
    return RewardModel(theta.float(), kappa.float())


def slot_weights(slates: LoggedSlates, target: TargetSlots) -> Tensor:
    """Prefix weights ``W_{s,r} = Π_{j <= r} π_j / μ_j`` ``[S, K]`` (float64; 0 past the slate's end)."""
    rho = torch.where(slates.shown, target.propensity.double() / slates.propensity.double(), 1.0)  # [S, K]
    return torch.where(slates.shown, rho.cumprod(1), 0.0)  # [S, K]


def per_user_columns(slates: LoggedSlates, target: TargetSlots) -> Tensor:
    """Per user (= slate), the sums whose means give every estimate: ``[S, 3 + 3K]`` float64.

    Columns: logged reward, IPS sum, DR sum, then per rank ``W y`` (K), ``W`` (K) and ``[rank shown]`` (K).
    """
    shown = slates.shown  # [S, K]
    y = torch.where(shown, slates.reward.double(), 0.0)  # [S, K]
    w = slot_weights(slates, target)  # [S, K]
    w_above = torch.cat([torch.ones_like(w[:, :1]), w[:, :-1]], dim=1)  # [S, K] W_{r-1}, W_{-1} = 1
    q = target.predicted_reward.double()  # [S, K]
    dr = torch.where(shown, w * (y - q) + w_above * target.expected_reward.double(), 0.0)  # [S, K]
    sums = torch.stack([y.sum(1), (w * y).sum(1), dr.sum(1)], dim=1)  # [S, 3]
    return torch.cat([sums, w * y, w, shown.double()], dim=1)  # [S, 3 + 3K]


def estimates_from_means(means: Tensor, n_ranks: int) -> dict[str, Tensor]:
    """Each estimator ``[...]`` from column means ``[..., 3 + 3K]`` of ``per_user_columns``."""
    k = n_ranks
    wy, w, share = means[..., 3 : 3 + k], means[..., 3 + k : 3 + 2 * k], means[..., 3 + 2 * k :]  # [..., K]
    per_rank = torch.where(w > 0, wy / torch.where(w > 0, w, 1.0), 0.0)  # [..., K]
    return {
        "logged": means[..., 0],
        "ips": means[..., 1],
        "snips": (share * per_rank).sum(-1),
        "dr": means[..., 2],
    }


def estimate(
    slates: LoggedSlates, target: TargetSlots, n_samples: int, seed: int, level: float = 0.95
) -> dict[str, Estimate]:
    """Every estimator of ``ESTIMATORS`` with its ``level`` percentile bootstrap interval over users."""
    columns = per_user_columns(slates, target)  # [S, M]
    k = slates.items.shape[1]
    point = estimates_from_means(columns.mean(0), k)
    samples = estimates_from_means(resampled_means(columns, n_samples, seed), k)  # each [n_samples]
    alpha = (1.0 - level) / 2.0
    out = {}
    for name in ESTIMATORS:
        lo, hi = torch.quantile(samples[name], torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
        out[name] = Estimate(float(point[name]), float(lo), float(hi))
    return out


def diagnostics(slates: LoggedSlates, target: TargetSlots) -> dict[str, float | list[float]]:
    """How far the log supports the target: the share of slots it can reach, mean weight and ESS per rank.

    A mean prefix weight far from 1, or an effective sample size ``(Σ W)² / Σ W²`` far below the number of
    slates, says the logging policy rarely makes the target's choices: the intervals are then wide or off.
    """
    shown = slates.shown  # [S, K]
    w = slot_weights(slates, target)  # [S, K]
    n_r = shown.sum(0).double()  # [K]
    sum_w, sum_w2 = w.sum(0), (w * w).sum(0)  # [K]
    ess = torch.where(sum_w2 > 0, sum_w * sum_w / torch.where(sum_w2 > 0, sum_w2, 1.0), 0.0)  # [K]
    return {
        "target_support": float((target.propensity[shown] > 0).double().mean()) if bool(shown.any()) else 0.0,
        "mean_weight_by_rank": (sum_w / n_r.clamp(min=1)).tolist(),
        "ess_by_rank": ess.tolist(),
    }


def served_ctr(log: pl.DataFrame, rank_factor: Tensor) -> pl.DataFrame:
    """Per served item: ``impressions`` (its support), ``clicks`` (summed reward), ``ctr`` = clicks / impressions
    = P(interacted | served), and ``ctr_rank_adjusted`` = clicks / Σ κ_rank over its impressions: the rate at an
    average logged slot under the position-based model (null when it was only shown where nobody clicked).

    Args:
        log: The validated log (``item_id``, ``rank``, ``reward``; original ids).
        rank_factor: ``κ_r`` ``[K]`` of the reward model.
    """
    kappa = pl.DataFrame({"rank": range(rank_factor.numel()), "_kappa": rank_factor.double().tolist()})
    frame = log.select("item_id", pl.col("rank").cast(pl.Int64), pl.col("reward").cast(pl.Float64))
    return (
        frame.join(kappa.with_columns(pl.col("rank").cast(pl.Int64)), on="rank", how="left")
        .group_by("item_id")
        .agg(
            pl.len().alias("impressions"),
            pl.col("reward").sum().alias("clicks"),
            pl.col("_kappa").sum().alias("_exposure"),
        )
        .with_columns(
            (pl.col("clicks") / pl.col("impressions")).alias("ctr"),
            pl.when(pl.col("_exposure") > 0)
            .then(pl.col("clicks") / pl.col("_exposure"))
            .otherwise(None)
            .alias("ctr_rank_adjusted"),
        )
        .drop("_exposure")
        .sort(["impressions", "item_id"], descending=[True, False])
    )
