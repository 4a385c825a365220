"""Host overhead of a training step and a validation pass, at sizes where the arithmetic costs next to nothing.

    python benchmarks/bench_overhead.py                   # SASRec and BERT4Rec, record to RESULTS.md
    python benchmarks/bench_overhead.py --models sasrec --no-record -- trainer.enable_progress_bar=false

At hidden 8, max_len 16, batch 8 and 100 items a step's arithmetic is microseconds, so what a step costs is
Python, Lightning, logging and operator dispatch. For each model it times:

- ours: ``python -m recsys_attn.train`` itself (the command a user runs, its default callbacks and csv logger), on
  a synthetic log, with a callback (``StepClock``, added through ``+callbacks.clock``) that stamps every training
  batch's start and every validation pass; a step is the time from one batch's start to the next's, the first
  ``--warmup`` of each epoch left out. It also counts the operators (``aten::*``) dispatched over ``--profile``
  steps with torch.profiler.
- plain: the same model's encoder, its full cross-entropy over the target positions and its optimiser (the model's
  AdamW parameter groups and weight decay, its warm-up schedule stepped each step), in a loop written here over
  batches built beforehand by the same datamodule: the floor our step is compared with. As a diagnostic it also
  times the same step with each batch built just before it (the build timed apart): what the work between steps
  does to a step's own time, and ``step_ratio_building``, ours over a plain loop that builds its batches.

The last line is one JSON object: per model ``step_ratio`` (our step time over the plain loop's), ``op_ratio``
(operators per step, ours over plain) and ``val_ratio`` (a validation pass of ``--eval-users`` users over 20
plain steps), with the times behind them. Goals (issue 27): step_ratio <= 1.3, op_ratio <= 1.5, val_ratio <= 1.
Each figure is the median over ``--rounds`` back-to-back pairs (alternating order), each ratio taken within its pair
(the spread of step_ratio over the pairs is printed and in the JSON). Both run on ``--threads`` torch threads
(1 by default: at these sizes threads only add synchronisation, and a
second job on the machine cannot oversubscribe them). Measure on a quiet machine all the same; rows go to
benchmarks/RESULTS.md with the command, machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import machine, record
from profile_step import build

REPO = Path(__file__).resolve().parent.parent
SECTION = "## Host overhead of a step (`bench_overhead.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | command | model | ours ms/step | plain ms/step | step_ratio | ours ops/step | plain ops/step "
    "| op_ratio | val pass ms | val_ratio | commit |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)
MODELS = ("sasrec", "bert4rec")
GOALS = {"step_ratio": 1.3, "op_ratio": 1.5, "val_ratio": 1.0}
PLAIN_STEPS_PER_VAL = 20


def sizes(log: Path, eval_users: int) -> list[str]:
    """The overrides of the tiny setting (on the synthetic log ``log``)."""
    return [
        "data=interactions",
        f"data.source.path={log}",
        "model.hidden_size=8",
        "model.max_len=16",
        "model.num_heads=1",
        "model.loss=ce",
        "data.batch_size=8",
        f"data.eval_batch_size={eval_users}",
        f"data.max_eval_users={eval_users}",
    ]


def write_log(path: Path, users: int = 400, items: int = 100, seed: int = 0) -> None:
    """A csv of ``users`` users with 12-24 distinct items each out of ``items``, timestamps in order."""
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,timestamp"]
    for user in range(users):
        n = int(rng.integers(12, 25))
        for t, item in enumerate(rng.choice(items, size=n, replace=False)):
            lines.append(f"{user},{item},{t}")
    path.write_text("\n".join(lines) + "\n")


def count_ops(prof: Any) -> int:
    """Operators (``aten::*`` events, nested ones included) a profiler recorded."""
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


class StepClock(L.Callback):
    """Stamps training batches and validation passes of a fit; profiles ``profile_steps`` steps of its last epoch.

    Writes ``{"step_s": [...], "inside_s": [...], "between_s": [...], "val_s": [...], "ops_per_step": n}`` to ``out``
    when the fit ends: each timed step split into its time inside the loop's batch (``on_train_batch_start`` to
    ``on_train_batch_end``: the training step, what the plain loop does) and between batches (the loop's bookkeeping,
    the next batch fetched and built, the hooks around it). A batch of the loop may hold several optimiser steps
    (``data.steps_per_call``): its times are divided by the steps it took (``global_step``'s advance), and the first
    ``warmup`` optimiser steps of each epoch are left out.
    """

    def __init__(self, out: str, warmup: int = 5, profile_steps: int = 20) -> None:
        self.out, self.warmup, self.profile_steps = Path(out), warmup, profile_steps
        self.steps: list[float] = []
        self.inside: list[float] = []
        self.between: list[float] = []
        self.vals: list[float] = []
        self.ops_per_step = 0.0
        self._last: float | None = None  # when the last batch started
        self._last_step = 0  # global step at the last batch's start
        self._epoch_step = 0  # global step at the epoch's start
        self._end = 0.0  # when the last batch ended
        self._val_start = 0.0
        self._prof: Any = None
        self._prof_from = 0  # global step the profile started at

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last, self._epoch_step = None, trainer.global_step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        now, step = time.perf_counter(), trainer.global_step
        last_epoch = trainer.current_epoch == (trainer.max_epochs or 0) - 1
        profiled = self._prof is not None
        if self._last is not None and self._last_step - self._epoch_step >= self.warmup and not profiled:
            took = max(step - self._last_step, 1)  # optimiser steps the last batch took
            self.steps.append((now - self._last) / took)
            self.inside.append((self._end - self._last) / took)
            self.between.append((now - self._end) / took)
        if profiled and step - self._prof_from >= self.profile_steps:
            self._prof.stop()
            self.ops_per_step = count_ops(self._prof) / (step - self._prof_from)
            self._prof = None
        elif last_epoch and not profiled and not self.ops_per_step and step - self._epoch_step >= self.warmup:
            self._prof, self._prof_from = profile(activities=[ProfilerActivity.CPU]), step
            self._prof.start()
        self._last, self._last_step = time.perf_counter(), step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self._end = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.vals.append(time.perf_counter() - self._val_start)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        times = {"step_s": self.steps, "inside_s": self.inside, "between_s": self.between, "val_s": self.vals}
        self.out.write_text(json.dumps({**times, "ops_per_step": self.ops_per_step}))


def ours(model: str, log: Path, eval_users: int, epochs: int, extra: list[str], tmp: Path) -> dict[str, Any]:
    """Run the real ``train`` command with a ``StepClock``; what it measured."""
    out = tmp / f"{model}-clock.json"
    cmd = [
        sys.executable,
        "-m",
        "recsys_attn.train",
        f"model={model}",
        *sizes(log, eval_users),
        f"trainer.max_epochs={epochs}",
        "test=false",
        "trainer.accelerator=cpu",
        "+callbacks.clock._target_=bench_overhead.StepClock",
        f"+callbacks.clock.out={out}",
        f"hydra.run.dir={tmp / model}",
        f"paths.cache_dir={tmp / 'cache'}",
        *extra,
    ]
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"{model}: train failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return json.loads(out.read_text())


def plain(model_name: str, log: Path, eval_users: int, steps: int, tmp: Path) -> dict[str, float]:
    """The same model's encoder, full cross-entropy and optimiser (AdamW groups, warm-up) in a plain loop over
    prebuilt batches."""
    torch.manual_seed(0)
    overrides = [f"model={model_name}", *sizes(log, eval_users), f"paths.cache_dir={tmp / 'cache'}"]
    datamodule, model = build(None, overrides)
    encoder, n_items = model.encoder, model.n_items
    store = datamodule.store

    def draw(seed: int) -> Any:  # a batch of 8 random samples, as ours draws them
        return store.train_batch(torch.randint(store.n_train_samples, (8,)), seed)

    batches = [(b.input, b.target) for b in map(draw, range(64))]
    optimizer = model.build_optimiser()  # the optimiser ours steps (BERT4Rec: weight decay on matrices)
    factor = model.lr_schedule(lambda: 40 + steps)  # BERT4Rec: a warm-up, stepped as ours steps it
    scheduler = None if factor is None else torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    encoder.train()

    def step(items: Tensor, target: Tensor) -> None:  # [B, L], [B, L]
        hidden = encoder(items)  # [B, L, D]
        at = target != 0  # [B, L] positions with a target
        logits = hidden[at] @ encoder.item_weights(n_items).T  # [N, n_items + 1]
        loss = F.cross_entropy(logits, target[at])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()

    for i in range(20):
        step(*batches[i % len(batches)])
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(*batches[i % len(batches)])
        times.append(time.perf_counter() - start)
    # the same step with its batch built just before it, as a loop that builds its batches does (ours does): the
    # build is timed apart, so the step's own time says what the work between steps does to it (caches, branch
    # predictors), apart from what that work costs
    built, builds = [], []
    for i in range(steps):
        start = time.perf_counter()
        batch = draw(64 + i)
        between = time.perf_counter()
        step(batch.input, batch.target)
        built.append(time.perf_counter() - between)
        builds.append(between - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(20):
            step(*batches[i % len(batches)])
    return {
        "step_s": statistics.median(times),
        "built_step_s": statistics.median(built),
        "build_s": statistics.median(builds),
        "ops_per_step": count_ops(prof) / 20,
    }


def measure_round(
    model: str, eval_users: int, epochs: int, steps: int, extra: list[str], ours_first: bool
) -> dict[str, float]:
    """One plain loop and one run of ours, back to back on the same synthetic log, in the order asked."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        log = tmp / "log.csv"
        write_log(log)
        if ours_first:
            got = ours(model, log, eval_users, epochs, extra, tmp)
            base = plain(model, log, eval_users, steps, tmp)
        else:
            base = plain(model, log, eval_users, steps, tmp)
            got = ours(model, log, eval_users, epochs, extra, tmp)
    step_s, val_s = statistics.median(got["step_s"]), statistics.median(got["val_s"])
    return {
        "ours_step_ms": 1e3 * step_s,
        "plain_step_ms": 1e3 * base["step_s"],
        "step_ratio": step_s / base["step_s"],
        "ours_inside_ms": 1e3 * statistics.median(got["inside_s"]),  # the training step, hooks around it
        "ours_between_ms": 1e3 * statistics.median(got["between_s"]),  # the loop, the next batch built
        # diagnostics, not goals: the plain step with a batch built before each (build timed apart), and our step
        # over a plain loop that builds its batches as ours does
        "plain_built_step_ms": 1e3 * base["built_step_s"],
        "plain_build_ms": 1e3 * base["build_s"],
        "step_ratio_building": step_s / (base["built_step_s"] + base["build_s"]),
        "ours_ops_per_step": got["ops_per_step"],
        "plain_ops_per_step": base["ops_per_step"],
        "op_ratio": got["ops_per_step"] / base["ops_per_step"],
        "val_pass_ms": 1e3 * val_s,
        "val_ratio": val_s / (PLAIN_STEPS_PER_VAL * base["step_s"]),
        "steps_timed": float(len(got["step_s"])),
        "val_passes": float(len(got["val_s"])),
    }


def measure(model: str, eval_users: int, epochs: int, steps: int, extra: list[str], rounds: int) -> dict[str, float]:
    """``rounds`` back-to-back pairs, in alternating order; each figure is the median over them, each ratio taken
    within its pair (so ``step_ratio`` is not exactly the median ms over the median ms).

    A ratio within a pair cancels what drifts between pairs (another job starting, the CPU's clock), the alternating
    order what going first or second does; the median of the pairs' ratios drops an odd one. ``step_ratio_min`` and
    ``step_ratio_max`` give the spread.
    """
    if rounds < 1:
        raise SystemExit(f"--rounds: expected at least 1, got {rounds}")
    per_round = [measure_round(model, eval_users, epochs, steps, extra, i % 2 == 1) for i in range(rounds)]
    out = {key: statistics.median(r[key] for r in per_round) for key in per_round[0]}
    out["step_ratio_min"] = min(r["step_ratio"] for r in per_round)
    out["step_ratio_max"] = max(r["step_ratio"] for r in per_round)
    out["rounds"] = float(rounds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of our run (50 steps each; 100 for cloze)")
    parser.add_argument("--steps", type=int, default=300, help="timed steps of the plain loop")
    parser.add_argument("--eval-users", type=int, default=256, help="users of a validation pass (one batch)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both (1: no thread contention)")
    parser.add_argument("--rounds", type=int, default=3, help="back-to-back pairs (alternating order); medians")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    parser.add_argument("overrides", nargs="*", help="after --: overrides of our run (e.g. logger=none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes_ = (args.eval_users, args.epochs, args.steps, args.overrides, args.rounds)
    results = {m: measure(m, *sizes_) for m in args.models}
    for m, r in results.items():
        goals = ", ".join(f"{k} {r[k]:.2f} (goal <= {g})" for k, g in GOALS.items())
        spread = f"step_ratio {r['step_ratio_min']:.2f}-{r['step_ratio_max']:.2f} over {args.rounds} rounds"
        split = f"inside the batch {r['ours_inside_ms']:.2f}, between batches {r['ours_between_ms']:.2f}"
        built = (
            f"plain with each batch built first: step {r['plain_built_step_ms']:.2f} + build "
            f"{r['plain_build_ms']:.2f}, ours over it {r['step_ratio_building']:.2f}"
        )
        print(f"{m}: ours {r['ours_step_ms']:.2f} ms/step ({split}), plain {r['plain_step_ms']:.2f}; {goals}; {spread}")
        print(f"  {built}")
    if not args.no_record:
        cmd = "python benchmarks/bench_overhead.py " + " ".join(sys.argv[1:])
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        for m, r in results.items():
            row = (
                f"| {dt.date.today()} | {machine()} | `{cmd.strip()}` | {m} | {r['ours_step_ms']:.2f} | "
                f"{r['plain_step_ms']:.2f} | {r['step_ratio']:.2f} ({r['step_ratio_min']:.2f}-"
                f"{r['step_ratio_max']:.2f}, {args.rounds} rounds) | {r['ours_ops_per_step']:.0f} | "
                f"{r['plain_ops_per_step']:.0f} | {r['op_ratio']:.2f} | {r['val_pass_ms']:.1f} | "
                f"{r['val_ratio']:.2f} | {commit.stdout.strip()} |"
            )
            record(row + "\n", SECTION, HEADER)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
