"""Where early stopping would have ended a run: its validation curve replayed through stopping rules.

    python benchmarks/stopping.py /work/persist/reproduce/bert4rec_ml-1m/train.log
    python benchmarks/stopping.py logs/train/runs/<run>/csv/metrics.csv --patience 20 --smoothing 0 0.8

Reads ``val/ndcg@10`` per epoch from a run's ``csv/metrics.csv`` or from the progress lines of its log
(``epoch 12/200 · ... val/ndcg@10 0.1234 ...``; a log of several resumed invocations holds every epoch, the
last line of an epoch counting), feeds it, epoch by epoch, to ``SmoothedEarlyStopping`` (the callback the
runs use) for each ``--smoothing`` (0 = plain early stopping on the raw value), and prints a table: the epoch
each rule stops at, the best raw epoch up to there (the checkpoint it would keep) and that value.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path
from typing import NamedTuple

PROGRESS = re.compile(r"epoch (\d+)/\d+ · .*?val/ndcg@10 ([0-9.]+|nan)")
"""A progress line (recsys_attn.tracking.progress): the 1-based epoch and its val/ndcg@10."""


def read_curve(path: Path) -> list[float]:
    """val/ndcg@10 per epoch, epoch 1 first, from a ``metrics.csv`` or a log of progress lines.

    In ``metrics.csv`` only epochs that trained count: ``train`` validates the best checkpoint once more after
    the fit, a row dated one epoch past the last.
    """
    metric = "val/ndcg@10"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (a run's csv/metrics.csv or its train.log)")
    by_epoch: dict[int, float] = {}
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        trained = {r["epoch"] for r in rows if r.get("train/loss_epoch")}
        for row in rows:
            if row.get(metric) and row["epoch"] in trained:
                by_epoch[int(float(row["epoch"])) + 1] = float(row[metric])
    else:
        for line in path.read_text(errors="replace").splitlines():
            if m := PROGRESS.search(line):
                by_epoch[int(m.group(1))] = float(m.group(2))
    if not by_epoch:
        raise SystemExit(f"{path}: no {metric} per epoch found (a run's csv/metrics.csv or its train.log)")
    missing = sorted(set(range(1, max(by_epoch) + 1)) - set(by_epoch))
    if missing:
        raise SystemExit(f"{path}: epochs {missing[:5]}{'...' if len(missing) > 5 else ''} have no {metric}")
    return [by_epoch[e] for e in range(1, max(by_epoch) + 1)]


class Outcome(NamedTuple):
    """Where one rule ends a curve (epochs 1-based; ``stop`` None: it runs to the curve's end)."""

    smoothing: float
    stop: int | None
    best_epoch: int
    best: float


def replay(curve: list[float], patience: int, smoothing: float, min_delta: float = 0.0) -> Outcome:
    """Feed ``curve`` to ``SmoothedEarlyStopping`` (mode max) until it says stop."""
    import torch

    from recsys_attn.tracking.callbacks import SmoothedEarlyStopping

    rule = SmoothedEarlyStopping(monitor="val", mode="max", patience=patience, min_delta=min_delta, smoothing=smoothing)
    stop = None
    for epoch, value in enumerate(curve, start=1):
        should_stop, _ = rule._evaluate_stopping_criteria(torch.tensor(value))
        if should_stop:
            stop = epoch
            break
    seen = curve[: stop or len(curve)]
    best_epoch = max(range(len(seen)), key=seen.__getitem__) + 1
    return Outcome(smoothing, stop, best_epoch, seen[best_epoch - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curve", type=Path, help="a run's csv/metrics.csv or its log (train.log)")
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--min-delta", type=float, default=0.0002, help="model=bert4rec's; callbacks/default: 0")
    parser.add_argument("--smoothing", type=float, nargs="+", default=[0.0, 0.8])
    args = parser.parse_args()
    curve = read_curve(args.curve)
    best = max(curve)
    print(f"{args.curve}: {len(curve)} epochs, best val/ndcg@10 {best:.4f} at epoch {curve.index(best) + 1}")
    print("| smoothing | patience | min_delta | stops at epoch | best epoch kept | its val/ndcg@10 |")
    print("|---|---|---|---|---|---|")
    for s in args.smoothing:
        o = replay(curve, args.patience, s, args.min_delta)
        stop = str(o.stop) if o.stop else f"not within the {len(curve)} epochs"
        print(f"| {s:g} | {args.patience} | {args.min_delta:g} | {stop} | {o.best_epoch} | {o.best:.4f} |")


if __name__ == "__main__":
    main()
