"""A simulated feedback loop: a world model plays the users, a production model serves them and learns from it.

**The world** (``ClickModel``). A user reads a served slate from the top; at rank ``r`` they take the item with
probability ``q_r = κ_r · a[u, item]`` and stop at the first take, so a slate yields at most one item (a
cascade). The attraction ``a[u, i] = sigmoid(log softmax(world scores of u)_i + boost)`` calibrates a world
model's scores into probabilities: with ``boost = log 50`` an item the world gives 2% of its next-item mass is
a coin flip. The reward at a rank depends on its item and the items above it only, which is what the
off-policy estimators assume (``ope_estimators``), and the expected reward of any slate is exact:
``P(take at r) = q_r · Π_{j<r} (1 - q_j)``, summing to ``1 - Π_r (1 - q_r)``.

**The production side.** ``Log`` holds each user's items (a start log, then what they took); ``log_datamodule``
hands it to Lightning with each user's held-out real item as the test target, never as a training item, and
trains only on the users it is told to; ``fine_tune`` trains a model on it for a few epochs.

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

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import lightning as L
import polars as pl
import torch
from torch import Tensor

from recsys_attn.callbacks import NonFiniteLossGuard
from recsys_attn.constants import PAD
from recsys_attn.data.batches import EvalBatch, EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.split import EvalSet, Splits
from recsys_attn.evaluation.beyond import BeyondAccuracy
from recsys_attn.evaluation.bootstrap import bootstrap_ci
from recsys_attn.metrics import per_user_values, target_ranks
from recsys_attn.models.base import RecModule
from recsys_attn.serving.ope_estimators import LoggedSlates, diagnostics, estimate, fit_reward_model
from recsys_attn.serving.policies import Greedy, Policy
from recsys_attn.serving.targets import target_slots

BOOST = math.log(50.0)
"""``log 50``: the attraction of an item the world gives 1/50 of its next-item probability is 0.5."""


class Log(NamedTuple):
    """Every user's items, oldest first, in one flat tensor; row ``u`` of ``lengths`` is user_idx ``u + 1``."""

    values: Tensor  # [N] item indices, users concatenated in user_idx order
    lengths: Tensor  # [U] items per user

    @property
    def starts(self) -> Tensor:
        """Where each user's items begin in ``values`` ``[U]``."""
        return self.lengths.cumsum(0) - self.lengths

    def append(self, items: Tensor) -> Log:
        """The log with one item per user ``[U]`` appended after their last (PAD: nothing to append)."""
        if items.shape != self.lengths.shape:
            raise ValueError(f"append: one item per user {tuple(self.lengths.shape)}, got {tuple(items.shape)}")
        took = items != PAD  # [U]
        lengths = self.lengths + took.long()  # [U]
        starts = lengths.cumsum(0) - lengths  # [U]
        owner = torch.repeat_interleave(torch.arange(self.lengths.numel()), self.lengths)  # [N] row of each item
        offset = torch.arange(self.values.numel()) - self.starts[owner]  # [N] place within its user
        values = torch.empty(int(lengths.sum()), dtype=self.values.dtype)  # [N']
        values[starts[owner] + offset] = self.values
        values[(starts + lengths - 1)[took]] = items[took].to(self.values.dtype)
        return Log(values, lengths)


def split_log(splits: Splits, share: float, min_items: int = 2) -> tuple[Log, Tensor]:
    """Each user's first ``share`` of real items (at least ``min_items``) as a start log, and their last item ``[U]``.

    The items in between never enter the log: the world knows them, the production model does not.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"share: must be in (0, 1), got {share}")
    full = splits.full  # every user's whole sequence, in user_idx order
    counts = full.ends - full.starts  # [U]
    if bool((counts < min_items + 1).any()):
        raise ValueError(f"split_log: every user needs at least {min_items + 1} items (a start log and a last item)")
    lengths = (counts.double() * share).floor().long().clamp(min=min_items).minimum(counts - 1)  # [U]
    owner = torch.repeat_interleave(torch.arange(counts.numel()), lengths)  # [N'] row of each kept item
    offset = torch.arange(owner.numel()) - (lengths.cumsum(0) - lengths)[owner]  # [N'] place within its user
    return Log(splits.values[full.starts[owner] + offset], lengths), splits.values[full.ends - 1]


def ope_users(n_users: int, share: float, seed: int) -> Tensor:
    """A random ``share`` of the users ``[U]`` (bool, seeded): kept out of training, their slates evaluate models."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share: must be in (0, 1), got {share}")
    order = torch.randperm(n_users, generator=torch.Generator().manual_seed(seed))  # [U]
    chosen = torch.zeros(n_users, dtype=torch.bool)
    chosen[order[: max(1, round(share * n_users))]] = True
    return chosen


def log_splits(log: Log, targets: Tensor, n_items: int, trained: Tensor | None = None) -> Splits:
    """Training on the logs of the ``trained`` users ``[U]`` (bool; None = all), testing every user on ``targets``.

    The test set holds each user's whole log as input and their target ``[U]``; there is no validation set.
    """
    users = torch.arange(1, log.lengths.numel() + 1)  # [U] user_idx
    starts = log.starts  # [U]
    ends = starts + log.lengths  # [U]
    test = EvalSet(users, starts, ends, targets, ends)
    full = EvalSet(users, starts, ends, torch.zeros_like(users), ends)
    keep = torch.ones_like(users, dtype=torch.bool) if trained is None else trained  # [U]
    return Splits(log.values, starts[keep], ends[keep], test.subset(0), test, n_items, full)


def log_datamodule(base: SeqDataModule, log: Log, targets: Tensor, trained: Tensor | None = None) -> SeqDataModule:
    """A datamodule with the settings and id maps of ``base`` (set up) over ``log`` (see ``log_splits``)."""
    if base.prepared is None:
        raise RuntimeError("log_datamodule: set the base datamodule up first (base.setup())")
    dm = SeqDataModule(base.source, base.preparation, base.split, **asdict(base.settings))
    dm.prepared = base.prepared  # setup() keeps splits that are already there
    dm.splits = log_splits(log, targets, base.n_items, trained)
    return dm


def fine_tune(model: RecModule, datamodule: SeqDataModule, epochs: int, accelerator: str = "cpu") -> None:
    """Train ``model`` in place for ``epochs`` epochs on the datamodule's training sequences, without validation."""
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[NonFiniteLossGuard()],
    )
    trainer.fit(model, datamodule=datamodule)


def clone(model: RecModule) -> RecModule:
    """A new module of the same class, settings and weights (no trainer attached)."""
    copy = type(model)(item_popularity=model.item_popularity.clone(), **model.hparams)
    copy.load_state_dict(model.state_dict())
    return copy


@contextmanager
def evaluating(model: RecModule) -> Iterator[None]:
    """Eval mode and no gradients inside; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def dcg_position_bias(k: int) -> Tensor:
    """``κ_r = 1 / log2(r + 2)`` ``[k]``: the chance a user reads rank ``r``, NDCG's discount."""
    return 1.0 / torch.log2(torch.arange(k, dtype=torch.float32) + 2.0)


@dataclass(frozen=True)
class ClickModel:
    """The cascade of the module docstring: row ``u`` of ``attraction`` is the user in row ``u`` of every slate."""

    attraction: Tensor  # [U, V] P(take | read), 0 for PAD
    position_bias: Tensor  # [K] κ_r, the chance rank r is read

    @classmethod
    def from_scores(cls, scores: Tensor, position_bias: Tensor, boost: float = BOOST) -> ClickModel:
        """Attractions ``sigmoid(log softmax(scores) + boost)`` from world scores ``[U, V]`` (column 0 = PAD)."""
        s = scores.float().clone()  # [U, V]
        s[:, PAD] = float("-inf")
        return cls(torch.sigmoid(s.log_softmax(1) + boost), position_bias.float())

    def take_rates(self, slates: Tensor) -> Tensor:
        """``q_r = κ_r · a[u, item]`` ``[U, k]`` of each slot (0 for PAD)."""
        k = slates.shape[1]
        if k > self.position_bias.numel():
            raise ValueError(f"slates of {k} items but position_bias covers {self.position_bias.numel()} ranks")
        return self.attraction.gather(1, slates) * self.position_bias[:k]  # [U, k]

    def slot_probabilities(self, slates: Tensor) -> Tensor:
        """P(the user takes the item at rank r) ``[U, k]``: ``q_r · Π_{j<r} (1 - q_j)``."""
        q = self.take_rates(slates)  # [U, k]
        left = torch.cumprod(1.0 - q, dim=1)  # [U, k] nothing taken up to and including r
        above = torch.cat([torch.ones_like(left[:, :1]), left[:, :-1]], dim=1)  # [U, k] nothing taken above r
        return q * above

    def value(self, slates: Tensor) -> Tensor:
        """Expected items taken from each slate ``[U]`` (at most one): ``1 - Π_r (1 - q_r)``."""
        return self.slot_probabilities(slates).sum(1)

    def simulate(self, slates: Tensor, generator: torch.Generator | None) -> Tensor:
        """Rewards ``[U, k]``: 1 at the rank whose item the user takes, else 0 (a cascade draw)."""
        q = self.take_rates(slates)  # [U, k]
        would = torch.rand(q.shape, generator=generator) < q  # [U, k] would take it if read before a take
        return (would & (would.long().cumsum(1) == 1)).float()  # [U, k] only the first


def slate_values(
    policy: Policy, scores: Tensor, click: ClickModel, k: int, draws: int, generator: torch.Generator | None
) -> Tensor:
    """The exact expected take of ``draws`` slates per user drawn by the policy ``[draws, U]``.

    Their mean over draws is a Monte Carlo estimate of each user's true value under the policy (greedy is
    deterministic: one draw is exact).
    """
    return torch.stack([click.value(policy.draw(scores, k, generator)[0]) for _ in range(draws)]).double()


def mean_and_error(values: Tensor, users: Tensor | None = None) -> tuple[float, float]:
    """The mean of ``slate_values`` ``[draws, U]`` over draws and the ``users`` ``[U]`` (bool; None = all), and
    its Monte Carlo standard error (0 for one draw)."""
    v = values if users is None else values[:, users]  # [D, U']
    per_draw = v.mean(1)  # [D]
    se = float(per_draw.std() / per_draw.numel() ** 0.5) if per_draw.numel() > 1 else 0.0
    return float(per_draw.mean()), se


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
        return model._rankable(model.score(batch.input), batch)


def accuracy(model: RecModule, batch: EvalBatch, k: int, bootstrap: int, seed: int) -> dict[str, float]:
    """``hr@k``, ``ndcg@k`` (full ranking, history filtered) of the batch's targets, with 95% bootstrap bounds."""
    with evaluating(model):
        scores = model.score(batch.input)  # [B, V]
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
    )
