"""A simulated feedback loop: a world model plays the users, a production model serves them and learns from it.

**The world** is a cascade click model (``click_model.ClickModel``) calibrated from a world model's scores.
**The production side** is the log the model learns from and its fine-tuning (``loop_log``).

**A round** (``run_loop``): every user is served a slate of ``k`` items drawn by the policy from the production
model's scores (their log and held-out item excluded), the world decides what is taken, the taken items join
the log and the model is fine-tuned on the grown log before the next round. Each round records the model's
accuracy on the held-out real items, the exposure of what it served (``BeyondAccuracy``), the realised
take-rate and the policy's true value, and the off-policy estimates of this round's policy from the previous
round's log. A model fine-tuned on a log has learnt which item each of its users took, so estimates from the
log it trained on flatter it; ``run_loop`` therefore estimates from the slates of *OPE users*, a share of users
the production model never trains on (it still serves them: a sequence model reads histories, not user ids),
and reports the flattered estimate from the trained users' slates beside it (``naive_*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import polars as pl
import torch
from torch import Tensor

from recsys_attn.constants import PAD
from recsys_attn.data.batches import EvalBatch, EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.evaluation.beyond import BeyondAccuracy
from recsys_attn.evaluation.bootstrap import bootstrap_ci
from recsys_attn.evaluation.metrics import per_user_values, target_ranks
from recsys_attn.models.base import RecModule
from recsys_attn.serving.click_model import ClickModel, mean_and_error, slate_values
from recsys_attn.serving.loop_log import Log, clone, evaluating, fine_tune, log_datamodule
from recsys_attn.serving.ope_estimators import LoggedSlates, diagnostics, estimate, fit_reward_model
from recsys_attn.serving.policies import Greedy, Policy
from recsys_attn.serving.targets import target_slots


def blocked(batch: EvalBatch) -> EvalBatch:
    """The batch with each row's target also among the seen items, so ranking and serving leave it out."""
    rows = torch.arange(batch.users.numel(), device=batch.users.device)  # [B]
    seen_rows = torch.cat([batch.seen_rows, rows])  # [S + B]
    seen_items = torch.cat([batch.seen_items, batch.target])  # [S + B]
    return batch._replace(seen_rows=seen_rows, seen_items=seen_items)


def heldout_batch(model: RecModule, datamodule: SeqDataModule) -> EvalBatch:
    """Every user's whole log as input and the held-out item as target, in user_idx order (one batch)."""
    datamodule.setup("test")
    datamodule.connect(model.sample_spec)
    n_users = len(datamodule.store.evals[EvalSplit.TEST])
    return datamodule.store.eval_batch(torch.arange(n_users), EvalSplit.TEST)


def serving_scores(model: RecModule, batch: EvalBatch) -> Tensor:
    """The model's scores ``[B, V]`` after each input, ``-inf`` for PAD and the batch's seen items (not servable)."""
    with evaluating(model):
        return model._rankable(model.scores_of(batch.input, batch.times), batch)


def accuracy(model: RecModule, batch: EvalBatch, k: int, bootstrap: int, seed: int) -> dict[str, float]:
    """``hr@k``, ``ndcg@k`` (full ranking, history filtered) of the batch's targets, with 95% bootstrap bounds."""
    with evaluating(model):
        scores = model.scores_of(batch.input, batch.times)  # [B, V]
    ranks = target_ranks(scores, batch.target, batch.seen_rows, batch.seen_items, model.n_items)  # [B]
    values = per_user_values(ranks, [k])
    names = [f"hr@{k}", f"ndcg@{k}"]
    table = torch.stack([values[n] for n in names], dim=1)  # [B, 2]
    lo, hi = bootstrap_ci(table, bootstrap, seed)
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        out.update({name: float(table[:, j].mean()), f"{name}_lo": float(lo[j]), f"{name}_hi": float(hi[j])})
    return out


def exposure(slates: Tensor, popularity: Tensor) -> dict[str, float]:
    """``coverage``, ``gini``, ``arp`` (mean ``popularity`` count) and ``novelty`` at k of served slates ``[U, k]``."""
    k = slates.shape[1]
    metric = BeyondAccuracy([k], popularity.numel() - 1)
    metric.update(slates, torch.zeros(slates.shape[0], dtype=torch.long), popularity)
    values = metric.compute()
    return {name: float(values[f"{name}@{k}"]) for name in ("coverage", "gini", "arp", "novelty")}


@dataclass(frozen=True)
class LoopSettings:
    """How a feedback loop runs."""

    rounds: int = 6
    """Rounds served (round 0 by the model as given, then one fine-tuning before each next round)."""
    k: int = 10
    """Items per slate."""
    epochs: int = 2
    """Fine-tuning epochs on the grown log between rounds (from the previous round's weights)."""
    draws: int = 16
    """Slates drawn per user for the true value of a stochastic policy (Monte Carlo)."""
    bootstrap: int = 500
    """Bootstrap samples over users for every interval."""
    seed: int = 0
    """Seeds the slates, the takes and the Monte Carlo draws."""


class _Logged(NamedTuple):
    slates: LoggedSlates  # every user's slate of the round
    serving: EvalBatch  # the users as they were served (their logs then)


def run_loop(
    model: RecModule,
    base: SeqDataModule,
    start: Log,
    targets: Tensor,
    held_out_users: Tensor,
    policy: Policy,
    click: ClickModel,
    popularity: Tensor,
    settings: LoopSettings,
) -> pl.DataFrame:
    """One row per round: accuracy, exposure, take-rates, true values, and estimates from the previous round's log.

    Args:
        model: The round-0 production model (trained on ``start`` of the other users); left unchanged.
        base: The set-up datamodule of the real data (settings and id maps).
        start: The start log; ``targets`` ``[U]``: each user's held-out real item, never served nor trained on.
        held_out_users: ``[U]`` bool, the OPE users (``ope_users``): served, never trained on.
        policy: How slates are drawn from the production model's scores.
        click: The world; its rows are the users in user_idx order.
        popularity: Counts ``[n_items + 1]`` whose mean over served items is ``arp``.
        settings: Rounds, slate size, fine-tuning and seeds.

    Returns:
        ``policy``, ``round``, ``hr@k``/``ndcg@k`` (each with ``_lo``/``_hi``; every user), ``coverage``, ``gini``,
        ``arp``, ``novelty`` (every user's slate), ``take_rate`` (realised) and ``true_value`` (+ ``_se``) over all
        users and over the OPE users (``*_ope_users``), ``taken_items`` (distinct items taken); from round 1 on,
        each estimator (``ips`` ... with ``_lo``/``_hi``) from the last round's slates of the OPE users and its
        ``estimand`` (+ ``_se``: this round's policy on those users as they were logged), ``ess_top`` (effective
        slates at rank 0), and the same from the trained users' slates prefixed ``naive_``.
    """
    s, model, trained = settings, clone(model), ~held_out_users
    generator = torch.Generator().manual_seed(s.seed)
    log, previous, rows = start, None, []
    for round_ in range(s.rounds):
        datamodule = log_datamodule(base, log, targets, trained)
        if round_ > 0:
            fine_tune(model, datamodule, s.epochs)
        batch = heldout_batch(model, datamodule)
        row: dict[str, Any] = {"round": round_, **accuracy(model, batch, s.k, s.bootstrap, s.seed)}
        serving = blocked(batch)
        scores = serving_scores(model, serving)  # [U, V] -inf: PAD, the log, the held-out item
        slates, propensity = policy.draw(scores, s.k, generator)  # [U, k]
        reward = click.simulate(slates, generator)  # [U, k]
        taken = (slates * reward.long()).sum(1)  # [U] the item taken, PAD when none
        values = slate_values(policy, scores, click, s.k, _draws(policy, s), generator)  # [D, U]
        row.update(exposure(slates, popularity))
        row["taken_items"] = int(taken[taken != PAD].unique().numel())
        for suffix, users in (("", None), ("_ope_users", held_out_users)):
            took = reward.sum(1) if users is None else reward.sum(1)[users]  # [U']
            row[f"take_rate{suffix}"] = float(took.mean())
            row[f"true_value{suffix}"], row[f"true_value{suffix}_se"] = mean_and_error(values, users)
        if previous is not None:  # this round's model and policy, on the users as the last round logged them
            logged_values = slate_values(
                policy, serving_scores(model, previous.serving), click, s.k, _draws(policy, s), generator
            )  # [D, U]
            for prefix, users in (("", held_out_users), ("naive_", trained)):
                row.update(_estimates(previous, users, model, policy, s, prefix))
                row[f"{prefix}estimand"], row[f"{prefix}estimand_se"] = mean_and_error(logged_values, users)
        rows.append(row)
        shown = slates != PAD
        logged = LoggedSlates(batch.users, slates, torch.where(shown, propensity, 1.0), reward, shown)
        previous = _Logged(logged, serving)
        log = log.append(taken)
    return pl.DataFrame(rows).with_columns(pl.lit(policy.name).alias("policy")).select("policy", pl.exclude("policy"))


def _draws(policy: Policy, s: LoopSettings) -> int:
    return 1 if isinstance(policy, Greedy) else s.draws  # greedy serves one slate per user: one draw is exact


def _estimates(
    logged: _Logged, users: Tensor, model: RecModule, policy: Policy, s: LoopSettings, prefix: str
) -> dict[str, float]:
    """Every estimate of ``policy`` on ``model`` from the logged slates of ``users`` ``[U]`` (bool), named
    ``{prefix}{estimator}`` with ``_lo``/``_hi``, and ``{prefix}ess_top``."""
    slates = LoggedSlates(*(t[users] for t in logged.slates))
    rows = torch.nonzero(users).flatten()  # [U'] rows of the logged batch
    serving = batch_rows(logged.serving, rows)
    reward = fit_reward_model(slates, model.n_items + 1)
    target = target_slots(model, policy, [serving], slates, reward)
    out: dict[str, float] = {}
    for name, e in estimate(slates, target, s.bootstrap, s.seed).items():
        out.update({f"{prefix}{name}": e.value, f"{prefix}{name}_lo": e.lo, f"{prefix}{name}_hi": e.hi})
    ess = diagnostics(slates, target)["ess_by_rank"]
    out[f"{prefix}ess_top"] = float(ess[0]) if isinstance(ess, list) else float(ess)
    return out


def batch_rows(batch: EvalBatch, rows: Tensor) -> EvalBatch:
    """The rows ``[R]`` (ascending) of an evaluation batch, its seen and later items renumbered."""
    new_row = torch.full((batch.users.numel(),), -1, dtype=torch.long)  # [B] -1: row left out
    new_row[rows] = torch.arange(rows.numel())
    seen = new_row[batch.seen_rows] >= 0  # [S]
    later = new_row[batch.later_rows] >= 0  # [S']
    return EvalBatch(
        batch.users[rows],
        batch.input[rows],
        batch.target[rows],
        new_row[batch.seen_rows[seen]],
        batch.seen_items[seen],
        new_row[batch.later_rows[later]],
        batch.later_items[later],
        None if batch.times is None else batch.times[rows],
    )
