"""Compare two runs' metrics.json and per_user.parquet: the DDP check of issue 14, recorded in RESULTS.md.

    python benchmarks/gpu/compare_metrics.py RUN_ONE RUN_TWO --label "evaluate, 1 vs 2 processes" --expect-equal

Timings (``time/*``) and training counters (``train/*``) are left out of the comparison. With
``--expect-equal`` the exit status is 1 when a metric differs by more than ``--tol`` or the per-user rows
differ; the row is recorded either way (unless ``--no-record``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from bench_train import machine, record

SECTION = "## DDP: two processes against one (`benchmarks/gpu/compare_metrics.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | runs | test users | metrics compared | max abs diff | per-user rows equal "
    "| s/epoch one / two | test/ndcg@10 one / two |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)
IGNORED = ("time/", "train/")


def per_user_equal(one: Path, two: Path) -> str:
    """Whether both runs' per_user.parquet hold the same rows (each user once per split); 'n/a' without them."""
    if not (one / "per_user.parquet").is_file() or not (two / "per_user.parquet").is_file():
        return "n/a"
    import polars as pl

    a, b = (pl.read_parquet(run / "per_user.parquet").sort("split", "user_id") for run in (one, two))
    once = (
        b.group_by("split")
        .agg(pl.col("user_id").n_unique().alias("users"), pl.len())
        .filter(pl.col("users") != pl.col("len"))
    )
    return "yes" if once.is_empty() and a.equals(b) else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("one", type=Path, help="run directory of the single-process run")
    parser.add_argument("two", type=Path, help="run directory of the two-process run")
    parser.add_argument("--label", default="1 vs 2 processes")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--expect-equal", action="store_true", help="exit 1 when the runs differ")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    m1, m2 = (json.loads((run / "metrics.json").read_text()) for run in (args.one, args.two))
    keys = sorted(k for k in m1.keys() & m2.keys() if not k.startswith(IGNORED))
    diffs = {k: abs(m1[k] - m2[k]) for k in keys}
    differ = [k for k in keys if diffs[k] > args.tol]
    if args.expect_equal:
        for k in differ:
            print(f"{k}: {m1[k]!r} vs {m2[k]!r}")
    only = sorted(k for k in m1.keys() ^ m2.keys() if not k.startswith(IGNORED))
    if only:
        print("in one run only:", ", ".join(only))
    rows = per_user_equal(args.one, args.two)
    worst = max(diffs, key=lambda k: diffs[k], default="")
    max_diff = f"{diffs[worst]:.2g} ({worst}; {len(differ)} over {args.tol:g})" if differ else "0"

    def pair(key: str, fmt: str) -> str:
        return " / ".join(format(m[key], fmt) if key in m else "-" for m in (m1, m2))

    line = (
        f"| {dt.date.today()} | {machine()} | {args.label} | {pair('test/users', '.0f')} | {len(keys)} | {max_diff} "
        f"| {rows} | {pair('time/epoch_s_median', '.3f')} | {pair('test/ndcg@10', '.4f')} |\n"
    )
    print(line, end="")
    if not args.no_record:
        record(line, SECTION, HEADER)
    equal = not differ and not only and rows != "no"
    sys.exit(0 if equal or not args.expect_equal else 1)


if __name__ == "__main__":
    main()
