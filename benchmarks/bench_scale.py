"""How cost grows with the log: preparation and one training epoch on synthetic logs of ML-20M's shape.

    python benchmarks/bench_scale.py                                  # 1M, 5M and 20M rows; row to RESULTS.md
    python benchmarks/bench_scale.py --rows 1000000 --no-record       # one size, printed only
    python benchmarks/bench_scale.py --train trainer=gpu               # the epoch on a GPU

Each size is a MovieLens-style ``ratings.csv`` from ``bench_prepare.write_synthetic``: users in ML-20M's
proportion to rows (138,493 per 20M: log-normal activity, at least 20 ratings each), 26,744 items with
Zipf-like popularity, ML-20M's time span. For each, two commands a user types, each in a fresh process whose
wall time and peak RSS are measured: ``python -m recsys_attn.prepare data=interactions ...`` (read, 5-core
filter, remap, split, cache) and ``python -m recsys_attn.train`` for one epoch on the cached preparation
(SASRec, hidden 64, max_len 200, batch 128, sampled softmax over 256 negatives, no validation), whose
``time/epoch_s_median`` is the epoch. One epoch is one window per user (users / 128 steps), so it grows with
the users, not the rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench_prepare import machine, write_synthetic
from bench_train import with_rows

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Scale: synthetic logs of ML-20M's shape (`bench_scale.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | command | rows | users | items | prepare s | prepare peak GiB | epoch s | "
    "train peak GiB |\n|---|---|---|---|---|---|---|---|---|---|\n"
)
ML20M_USERS, ML20M_ROWS, ITEMS = 138_493, 20_000_000, 26_744
MODEL = (
    "model.hidden_size=64",
    "model.max_len=200",
    "data.batch_size=128",
    "model.loss=sampled_softmax",
    "model.num_negatives=256",
)


def _measure(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (GiB) of ``cmd``, run from this (fresh) process; its output's tail."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    return seconds, peak, proc.stdout[-2000:]


def measured(cmd: list[str]) -> tuple[float, float, str]:
    """``_measure`` in a fresh spawned process, so the peak RSS is this command's alone."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (cmd,))


def data_overrides(log: Path, cache: Path) -> list[str]:
    return [
        "data=interactions",
        f"data.source.path={log}",
        "data.source.name=synthetic",
        "data.source.columns.user=userId",
        "data.source.columns.item=movieId",
        "data.source.columns.timestamp=timestamp",
        f"paths.cache_dir={cache}",
    ]


def one_size(rows: int, tmp: Path, train_overrides: list[str]) -> dict[str, float]:
    users = max(round(rows * ML20M_USERS / ML20M_ROWS), 1)
    log = tmp / f"ratings_{rows}.csv"
    n = write_synthetic(log, rows, users, ITEMS)
    data = data_overrides(log, tmp / "cache")
    py = sys.executable
    prep_s, prep_peak, _ = measured([py, "-m", "recsys_attn.prepare", *data, f"hydra.run.dir={tmp / 'prep'}"])
    run_dir = tmp / f"train_{rows}"
    train = [py, "-m", "recsys_attn.train", *data, *MODEL, "trainer.max_epochs=1", "trainer.limit_val_batches=0"]
    train += ["test=false", "logger=none", "callbacks=none", "trainer.enable_progress_bar=false"]
    _, train_peak, _ = measured([*train, *train_overrides, f"hydra.run.dir={run_dir}"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log.unlink()
    return {
        "rows": float(n),
        "users": float(users),
        "prepare_s": prep_s,
        "prepare_peak": prep_peak,
        "epoch_s": float(metrics["time/epoch_s_median"]),
        "train_peak": train_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000])
    parser.add_argument("--train", nargs="*", default=[], help="extra overrides of the training run")
    parser.add_argument("--no-record", action="store_true", help=f"do not add the rows to {RESULTS.name}")
    args = parser.parse_args()
    command = "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:])
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        for rows in args.rows:
            r = one_size(rows, Path(tmp), args.train)
            line = (
                f"| {datetime.now():%Y-%m-%d} | {machine()} | `{command.strip()}` | {r['rows']:,.0f} | "
                f"{r['users']:,.0f} | {ITEMS:,} | {r['prepare_s']:.1f} | {r['prepare_peak']:.2f} | "
                f"{r['epoch_s']:.1f} | {r['train_peak']:.2f} |\n"
            )
            print(line, end="", flush=True)
            lines.append(line)
    if not args.no_record:
        RESULTS.write_text(with_rows(RESULTS.read_text(), "".join(lines), SECTION, HEADER))
        print(f"added to {RESULTS}")


if __name__ == "__main__":
    main()
