"""What item features cost: training-epoch time and peak memory of each model with and without them, side by side.

    python benchmarks/bench_features.py                                  # SASRec, BERT4Rec, GRU4Rec on ml-1m
    python benchmarks/bench_features.py --models sasrec --epochs 3 --rounds 2 --fusion concat
    python benchmarks/bench_features.py --data ml-100k --features ml-100k --no-record -- model.hidden_size=8

Issue 25's budget: a run with features costs at most 1.3x the time per epoch of the same run without them.
Each model runs the real entry point in subprocesses, without and with ``features=<name>`` alternating
(without, with, with, without, ...) so a drift in the machine's load hits both; validation is off, each run's
median training-epoch time comes from its ``metrics.json`` and its peak resident memory from the kernel
(``wait4``). Rows go to benchmarks/RESULTS.md; the last line printed is one JSON object with every ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_epoch import epoch_run
from bench_train import REPO, machine, record, this_commit

SECTION = "## Item features: epoch time and memory (`bench_features.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | model | settings | features | s/epoch without | s/epoch with | time ratio "
    "| peak MiB without | peak MiB with | memory ratio | commit |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)
SRC = REPO / "src"
SIZE = ["model.max_len=50", "model.hidden_size=64", "data.batch_size=128"]  # the quick preset's size, every model
MODELS = {
    "sasrec": ["model=sasrec", *SIZE, "model.loss=ce"],
    "bert4rec": ["model=bert4rec", *SIZE],
    "gru4rec": ["model=gru4rec", *SIZE],
    "esasrec": ["model=esasrec", *SIZE],
    "hstu": ["model=hstu", *SIZE, "model.time_buckets=0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sasrec", "bert4rec", "gru4rec"], choices=list(MODELS))
    parser.add_argument("--data", default="ml-1m", help="data set (default: ml-1m)")
    parser.add_argument("--features", default="ml-1m", help="features group entry (default: ml-1m)")
    parser.add_argument("--fusion", default="sum", choices=["sum", "concat", "gated"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (the median is taken)")
    parser.add_argument("--rounds", type=int, default=2, help="without/with pairs per model, alternating")
    parser.add_argument("--no-record", action="store_true", help="print, do not write RESULTS.md")
    parser.add_argument("overrides", nargs="*", help="more overrides for every run (after --)")
    args = parser.parse_args()
    commit = this_commit()
    with_features = [f"features={args.features}", f"model.feature_fusion={args.fusion}"]
    rows, ratios = "", {}
    for name in args.models:
        base = [*MODELS[name], f"data={args.data}", *args.overrides]
        seconds: dict[bool, list[float]] = {False: [], True: []}
        peak: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for features in (False, True) if r % 2 == 0 else (True, False):
                s, mib = epoch_run(SRC, [*base, *(with_features if features else [])], args.epochs)
                seconds[features].append(s)
                peak[features].append(mib)
                print(f"[bench_features] {name} features={features}: {s:.2f} s/epoch, {mib:.0f} MiB", file=sys.stderr)
        t0, t1 = statistics.median(seconds[False]), statistics.median(seconds[True])
        m0, m1 = max(peak[False]), max(peak[True])
        ratios[name] = {"time_ratio": round(t1 / t0, 3), "memory_ratio": round(m1 / m0, 3)}
        rows += (
            f"| {dt.date.today()} | {machine()} | {name} | `{' '.join(base)}` | `{' '.join(with_features)}` "
            f"| {t0:.2f} | {t1:.2f} | {t1 / t0:.2f}x | {m0:.0f} | {m1:.0f} | {m1 / m0:.2f}x | {commit} |\n"
        )
    print(rows)
    if not args.no_record:
        record(rows, SECTION, HEADER)
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
