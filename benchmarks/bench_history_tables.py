"""Grouping a history file by user in bounded memory: ours (``serving.history_tables``) against polars' streaming
engine and DuckDB's out-of-core sort.

    python benchmarks/bench_history_tables.py                    # 1M and 10M rows
    python benchmarks/bench_history_tables.py --rows 200000 --check

The file is a csv of ``user_id,item_id,timestamp`` rows whose users are scattered through it (every row a random
user), the shape ``predict histories=`` must group: the output is, for every user in the order of its first row,
its items ordered by timestamp, then row. Each method runs in a fresh process, which reports its own peak RSS
(``ru_maxrss``) and wall time; the output is consumed in blocks of users. ``--check`` compares every method's
users and item sequences with ours. DuckDB is optional (``pip install duckdb``); without it, its rows are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl

BLOCK_USERS = 10_000
MEMORY_LIMIT = "1GB"
"""DuckDB's memory limit (it spills to a temporary folder beyond it)."""


def write_log(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows of ``rows // 100`` users, each row a random user (so users are scattered), in 1M-row chunks."""
    rng = np.random.default_rng(seed)
    users, items = max(rows // 100, 1), 20_000
    with path.open("w") as out:
        out.write("user_id,item_id,timestamp\n")
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            frame = pl.DataFrame(
                {
                    "user_id": rng.integers(1, users + 1, n),  # [n]
                    "item_id": rng.zipf(1.3, n) % items + 1,  # [n] popular items repeat
                    "timestamp": 1_600_000_000 + rng.integers(0, 10**7, n) // 1000 * 1000,  # [n] ties happen
                }
            )
            out.write(frame.write_csv(include_header=False))


def ours(path: Path, part_rows: int | None = None) -> Iterator[pl.DataFrame]:
    from recsys_attn.serving.history_tables import read_table

    yield from read_table(path, ",", BLOCK_USERS, part_rows)


def _grouped(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Rows (``line``, ``user_id``, ``item_id``, ``timestamp``) grouped per user as ours: items by time, then line."""
    return (
        frame.sort("user_id", "timestamp", "line")
        .group_by("user_id")
        .agg(pl.col("item_id").alias("items"), pl.col("line").min())
        .sort("line")
    )


def polars_streaming(path: Path, folder: Path) -> Iterator[pl.DataFrame]:
    """polars' streaming engine: scan, sort and group, ``sink_parquet``, then the result read back in blocks."""
    rows = pl.scan_csv(path, schema_overrides={"user_id": pl.String, "item_id": pl.String}).with_row_index(
        "line", offset=1
    )
    out = folder / "polars.parquet"
    _grouped(rows).sink_parquet(out, engine="streaming")
    yield from _blocks(out)


def duckdb_sort(path: Path, folder: Path) -> Iterator[pl.DataFrame]:
    """DuckDB with a memory limit: the same grouping by SQL, ``COPY`` to parquet (spilling), read back in blocks."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{MEMORY_LIMIT}'; SET temp_directory='{folder / 'spill'}'; SET threads=2")
    out = folder / "duckdb.parquet"
    con.execute(
        f"""COPY (
            WITH rows AS (
                SELECT row_number() OVER () AS line, CAST(user_id AS VARCHAR) AS user_id,
                       CAST(item_id AS VARCHAR) AS item_id, timestamp
                FROM read_csv('{path}', header = true, columns = {{
                    'user_id': 'VARCHAR', 'item_id': 'VARCHAR', 'timestamp': 'BIGINT'}})
            )
            SELECT user_id, list(item_id ORDER BY timestamp, line) AS items, min(line) AS line
            FROM rows GROUP BY user_id ORDER BY line
        ) TO '{out}' (FORMAT parquet)"""
    )
    con.close()
    yield from _blocks(out)


def _blocks(path: Path) -> Iterator[pl.DataFrame]:
    """The grouped parquet file, ``BLOCK_USERS`` users at a time (one record batch in memory)."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=BLOCK_USERS):
        yield pl.from_arrow(batch)  # type: ignore[misc]


METHODS: dict[str, Callable[..., Iterator[pl.DataFrame]]] = {
    "ours": ours,
    "polars streaming": polars_streaming,
    "duckdb": duckdb_sort,
}


def _consume(
    name: str,
    path: str,
    check: bool,
    part_rows: int | None,
    limit: str,
    queue: multiprocessing.Queue,
) -> None:
    """Run ``name`` on ``path`` in this (fresh) process; put seconds, peak RSS, users, rows and a digest."""
    global MEMORY_LIMIT
    MEMORY_LIMIT = limit
    digest = hashlib.sha256()
    users = rows = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_history_") as folder:
        method = METHODS[name]
        blocks = method(Path(path), part_rows) if name == "ours" else method(Path(path), Path(folder))
        for block in blocks:
            users += block.height
            rows += int(block["items"].list.len().sum())
            if check:
                text = block.select("user_id", pl.col("items").cast(pl.List(pl.String)).list.join(" ")).write_csv()
                digest.update(text.encode())
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"seconds": seconds, "peak_mib": peak_mib, "users": users, "rows": rows, "digest": digest.hexdigest()})


def run(
    name: str, path: Path, check: bool, timeout: float, part_rows: int | None = None, limit: str = MEMORY_LIMIT
) -> dict[str, object]:
    """One method in a fresh process (spawned: its peak memory is its own); ``timed_out`` past ``timeout`` s."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_consume, args=(name, str(path), check, part_rows, limit, queue))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        return {"timed_out": True, "seconds": timeout}
    if process.exitcode != 0:
        return {"failed": process.exitcode}
    return queue.get()


def main(argv: list[str] | None = None) -> dict[str, dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--check", action="store_true", help="compare every method's output with ours")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a method may take")
    parser.add_argument("--part-rows", type=int, default=None, help="ours: rows grouped in memory at once")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="which to run")
    parser.add_argument("--memory-limit", default=MEMORY_LIMIT, help="DuckDB's memory_limit (it spills beyond)")
    args = parser.parse_args(argv)
    for name in set(METHODS) - set(args.methods):
        METHODS.pop(name)
    try:
        import duckdb  # noqa: F401
    except ImportError:
        METHODS.pop("duckdb")
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_history_log_") as folder:
        for rows in args.rows:
            path = Path(folder) / f"log_{rows}.csv"
            write_log(path, rows)
            for name in METHODS:
                got = run(name, path, args.check, args.timeout, args.part_rows, args.memory_limit)
                results[f"{name} @ {rows}"] = got
                print(f"{name:18s} {rows:>11,} rows: " + ", ".join(f"{k} {v}" for k, v in got.items()), flush=True)
            if args.check:
                digests = {name: results[f"{name} @ {rows}"].get("digest") for name in METHODS}
                same = len(set(digests.values())) == 1
                print(f"same users and item sequences as ours at {rows:,} rows: {same} {digests}", flush=True)
                results[f"check @ {rows}"] = {"same": same}
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
