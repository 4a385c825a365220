"""Speed of data preparation: a synthetic ML-20M-sized log and the real ML-1M file.

    python benchmarks/bench_prepare.py                 # 20M rows; appends to benchmarks/RESULTS.md
    python benchmarks/bench_prepare.py --rows 2000000 --no-record

The synthetic log is written as a MovieLens ``ratings.csv`` (``userId,movieId,rating,timestamp``,
sorted by user) into a temporary folder: ~138k users with log-normal activity (at least 20
ratings each, as in ML-20M) and ~27k items with Zipf-like popularity. Each timing runs in a fresh
process (cold page cache aside) so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
from bench_train import machine

from recsys_attn.data.cache import load_prepared
from recsys_attn.data.preprocess import Preparation
from recsys_attn.data.sources import Source

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "| date | machine | command | what | seconds |\n|---|---|---|---|---|\n"


def write_synthetic(path: Path, rows: int, users: int, items: int, seed: int = 0) -> int:
    """Write a ratings.csv-like log of about ``rows`` rows in user chunks; return the row count."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(mean=0.0, sigma=1.2, size=users)
    counts = 20 + np.floor(activity / activity.sum() * (rows - 20 * users)).astype(np.int64)
    counts[: rows - int(counts.sum())] += 1  # make the total exact
    popularity = 1.0 / np.arange(10, items + 10) ** 0.9
    cdf = np.cumsum(popularity / popularity.sum())
    t0, t1 = 789_652_009, 1_427_784_002  # the ML-20M time span
    written = 0
    with path.open("wb") as fh:
        fh.write(b"userId,movieId,rating,timestamp\n")
        for start in range(0, users, 10_000):
            chunk = counts[start : start + 10_000]
            n = int(chunk.sum())
            user = np.repeat(np.arange(start + 1, start + 1 + len(chunk)), chunk)
            item = np.searchsorted(cdf, rng.random(n)) + 1
            item = rng.permutation(items)[item - 1] + 1  # popular items get scattered ids
            rating = rng.integers(1, 11, n) / 2.0
            stamp = rng.integers(t0, t1, n)
            pl.DataFrame({"userId": user, "movieId": item, "rating": rating, "timestamp": stamp}).write_csv(
                fh, include_header=False
            )
            written += n
    return written


def _timed(source: Source, prep: Preparation, data_dir: str, cache_dir: str) -> tuple[float, float]:
    """Seconds for one ``load_prepared`` call, and the process's peak RSS in GiB."""
    start = time.perf_counter()
    prepared = load_prepared(source, prep, data_dir, cache_dir)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(
        f"  {source.name}: {prepared.n_users:,} users, {prepared.n_items:,} items, "
        f"{prepared.n_interactions:,} interactions in {seconds:.2f} s (peak RSS {peak:.2f} GiB)"
    )
    return seconds, peak


def run_fresh(source: Source, prep: Preparation, data_dir: str, cache_dir: str) -> tuple[float, float]:
    """Run ``_timed`` in a fresh spawned process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_timed, (source, prep, data_dir, cache_dir))


def main() -> None:
    """Run the benchmarks and (unless --no-record) append them to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=138_493)
    parser.add_argument("--items", type=int, default=26_744)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    command = "python benchmarks/bench_prepare.py " + " ".join(sys.argv[1:])
    results: list[tuple[str, float]] = []
    five_core = Preparation(min_user_interactions=5, min_item_interactions=5)

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        data_dir, cache_dir = Path(tmp) / "data", Path(tmp) / "cache"
        (data_dir / "synthetic").mkdir(parents=True)
        start = time.perf_counter()
        n = write_synthetic(data_dir / "synthetic" / "ratings.csv", args.rows, args.users, args.items)
        size = (data_dir / "synthetic" / "ratings.csv").stat().st_size / 2**20
        took = time.perf_counter() - start
        print(f"synthetic log: {n:,} rows, {size:.0f} MiB, written in {took:.1f} s")
        source = Source(name="synthetic", format="movielens_csv", path="synthetic/ratings.csv")
        sec, peak = run_fresh(source, five_core, str(data_dir), str(cache_dir))
        results.append((f"synthetic ML-20M-like csv, {n:,} rows, 5-core, cold (peak RSS {peak:.1f} GiB)", sec))
        sec, peak = run_fresh(source, five_core, str(data_dir), str(cache_dir))
        results.append((f"same, cached (peak RSS {peak:.1f} GiB)", sec))

        real = os.environ.get("RECSYS_ATTN_DATA_DIR")
        if real and (Path(real) / "ml-1m" / "ml-1m.txt").is_file():
            ml1m = Source(name="ml-1m", format="user_item", path="ml-1m/ml-1m.txt")
            sec, peak = run_fresh(ml1m, Preparation(), real, str(cache_dir))
            results.append((f"ml-1m.txt (999,611 rows), cold (peak RSS {peak:.2f} GiB)", sec))
            sec, peak = run_fresh(ml1m, Preparation(), real, str(cache_dir))
            results.append((f"ml-1m.txt, cached (peak RSS {peak:.2f} GiB)", sec))
        else:
            print("RECSYS_ATTN_DATA_DIR not set or without ml-1m/ml-1m.txt: skipping ml-1m")

    date = datetime.now().strftime("%Y-%m-%d")
    lines = [f"| {date} | {machine()} | `{command.strip()}` | {what} | {sec:.2f} |" for what, sec in results]
    print("\n".join(lines))
    if not args.no_record:
        new = not RESULTS.exists()
        with RESULTS.open("a") as fh:
            if new:
                fh.write("# Benchmark results\n\n## Data preparation (`bench_prepare.py`)\n\n" + HEADER)
            fh.write("\n".join(lines) + "\n")
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
