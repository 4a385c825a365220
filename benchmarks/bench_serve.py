"""Serving speed and memory: synthetic new users from a history file, streamed to Parquet by ``predict``.

    python benchmarks/bench_serve.py                                   # 100k and 1M users; rows to RESULTS.md
    python benchmarks/bench_serve.py --users 100000 300000 --device cuda
    python benchmarks/bench_serve.py --users 2000 --no-record          # a quick check

Trains a tiny SASRec on ML-1M (hidden 16, max_len 20, four batches: speed is measured, not quality) unless
``--ckpt`` names a checkpoint, writes N synthetic users (5-30 random ML-1M items each, 1% of them ids the
model does not know) as JSON lines (or ``--format csv`` / ``parquet``: a row an interaction), and runs
``python -m recsys_attn.predict histories=<file> k=10`` once per size, each in its own process: its peak RSS
(``os.wait4``), its wall time, and the serving time predict logs (reading the histories, scoring, writing;
start-up and loading the checkpoint and data left out): users/s are over the serving time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from bench_train import machine, record

SECTION = "## Serving new users (`bench_serve.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | command | users | input | peak RSS MiB | wall s | serving s | users/s | row groups | note |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|\n"
)
TINY_TRAIN = (
    "trainer.accelerator=cpu",
    "model.max_len=20",
    "model.hidden_size=16",
    "data.batch_size=64",
    "trainer.limit_train_batches=4",
    "trainer.max_epochs=1",
    "data.max_eval_users=300",
    "logger=none",
)


def data_dir() -> Path:
    """The real data (``$RECSYS_ATTN_DATA_DIR``, else ../shared/data beside the repository)."""
    value = os.environ.get("RECSYS_ATTN_DATA_DIR")
    path = Path(value) if value else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (path / "ml-1m" / "ml-1m.txt").is_file():
        sys.exit(f"error: no ml-1m/ml-1m.txt under {path}; set RECSYS_ATTN_DATA_DIR")
    return path


def train_tiny(tmp: Path, cache: Path) -> Path:
    """``last.ckpt`` of a tiny SASRec trained on ML-1M in ``tmp``."""
    run = tmp / "train"
    command = [sys.executable, "-m", "recsys_attn.train", f"hydra.run.dir={run}", f"paths.cache_dir={cache}"]
    subprocess.run([*command, *TINY_TRAIN], check=True, capture_output=True, text=True)
    return run / "checkpoints" / "last.ckpt"


def write_users(path: Path, n_users: int, items: np.ndarray, seed: int = 0) -> None:
    """``n_users`` random histories over ``items`` (1% replaced by unknown ids) as JSON lines, or a csv or parquet
    table (a row group per 100k users)."""
    rng = np.random.default_rng(seed)
    with path.open("wb") as fh, ExitStack() as stack:
        for start in range(0, n_users, 100_000):
            users = np.arange(start + 1, min(start + 100_000, n_users) + 1)
            lengths = rng.integers(5, 31, users.size)
            flat = items[rng.integers(0, items.size, int(lengths.sum()))]
            flat = np.where(rng.random(flat.size) < 0.01, 10_000_000 + flat, flat)  # unknown to the model
            rows = pl.DataFrame({"user_id": np.repeat(users, lengths), "item_id": flat})
            if path.suffix == ".csv":
                rows.write_csv(fh, include_header=start == 0)
            elif path.suffix == ".parquet":
                if start == 0:
                    writer = stack.enter_context(pq.ParquetWriter(fh, rows.to_arrow().schema))
                writer.write_table(rows.to_arrow())
            else:
                rows.group_by("user_id", maintain_order=True).agg(pl.col("item_id").alias("items")).write_ndjson(fh)


def serve(
    ckpt: Path, histories: Path, out: Path, cache: Path, device: str, threads: int | None
) -> tuple[float, float, float]:
    """Wall seconds, serving seconds (reading, scoring, writing: predict's log) and peak RSS (MiB) of one
    ``predict`` process serving ``histories``."""
    run = out.parent / ("run_" + out.stem)
    command = [
        sys.executable,
        "-m",
        "recsys_attn.predict",
        f"ckpt_path={ckpt}",
        f"histories={histories}",
        "k=10",
        f"device={device}",
        f"output={out}",
        f"hydra.run.dir={run}",
        f"paths.cache_dir={cache}",
    ]
    start = time.perf_counter()
    env = dict(os.environ)
    if threads is not None:  # torch's and polars' thread pools
        env.update(OMP_NUM_THREADS=str(threads), POLARS_MAX_THREADS=str(threads))
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the largest of all children
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        sys.exit(f"error: predict failed on {histories}: {stderr[-2000:]}")
    served = re.search(r"served \d+ users in ([\d.]+) s", (run / "predict.log").read_text())
    if served is None:
        sys.exit(f"error: no 'served ... users in ... s' line in {run / 'predict.log'}")
    return seconds, float(served.group(1)), usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--format", choices=["jsonl", "csv", "parquet"], default="jsonl")
    parser.add_argument("--ckpt", type=Path, help="a checkpoint to serve (default: train a tiny SASRec)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads of predict (OMP_NUM_THREADS; default: all cores)")
    parser.add_argument("--note", default="", help="said in the note column, e.g. what else ran on the machine")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    os.environ["RECSYS_ATTN_DATA_DIR"] = str(data_dir())
    log = pl.read_csv(data_dir() / "ml-1m" / "ml-1m.txt", separator=" ", has_header=False, new_columns=["u", "i"])
    items = log["i"].unique()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as folder:
        tmp = Path(folder)
        cache = tmp / "cache"
        ckpt = args.ckpt or train_tiny(tmp, cache)
        rows = ""
        for n in args.users:
            histories = tmp / f"users_{n}.{args.format}"
            write_users(histories, n, items.to_numpy())
            out = tmp / f"recs_{n}.parquet"
            seconds, serving, peak = serve(ckpt, histories, out, cache, args.device, args.threads)
            meta = pq.read_metadata(out)
            if meta.num_rows != 10 * n:
                sys.exit(f"error: {out} holds {meta.num_rows} rows, expected {10 * n}")
            command = f"python benchmarks/bench_serve.py --users {n} --format {args.format} --device {args.device}"
            command += f" --threads {args.threads}" if args.threads is not None else ""
            note = f"load average {load:.1f} at start{'; ' + args.note if args.note else ''}"
            speed = n / serving
            size = f"{args.format}, {histories.stat().st_size / 2**20:.0f} MiB"
            rows += (
                f"| {dt.date.today()} | {machine()} | `{command}` | {n:,} | {size} | {peak:.0f} | {seconds:.1f} | "
                f"{serving:.1f} | {speed:,.0f} | {meta.num_row_groups} | {note} |\n"
            )
            print(rows.splitlines()[-1], flush=True)
            histories.unlink()
            out.unlink()
    if not args.no_record:
        record(rows, SECTION, HEADER)


if __name__ == "__main__":
    main()
