"""Training speed and quality of a run, recorded in benchmarks/RESULTS.md.

    python benchmarks/bench_train.py                                   # SASRec, ml-1m, 2 epochs, full size
    python benchmarks/bench_train.py --epochs 200 -- experiment=sasrec_ml-1m trainer=gpu
    python benchmarks/bench_train.py --no-record -- model=bert4rec trainer.precision=bf16-mixed

Runs the real entry point in a subprocess (the data cache warm beforehand), then records the median
seconds per training epoch, the fit time and test metrics, with the command, machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = (
    "\n## Training (`bench_train.py`)\n\n"
    "| date | machine | command | epochs | s/epoch (median) | fit s | test/ndcg@10 | test/hr@10 |\n"
    "|---|---|---|---|---|---|---|---|\n"
)


def machine() -> str:
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{platform.platform()}, {os.cpu_count()} cores{gpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for recsys_attn.train")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"trainer.max_epochs={args.epochs}",
            "logger=none",
            "callbacks=none",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={tmp}/run",
            *args.overrides,
        ]
        cmd = [sys.executable, "-m", "recsys_attn.train", *overrides]
        subprocess.run(cmd, check=True)
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    shown = " ".join(o for o in overrides if not o.startswith("hydra.run.dir"))
    row = (
        f"| {dt.date.today()} | {machine()} | `python -m recsys_attn.train {shown}` | {metrics['train/epochs']:.0f} "
        f"| {metrics['time/epoch_s_median']:.2f} | {metrics['time/fit_s']:.1f} "
        f"| {metrics.get('test/ndcg@10', float('nan')):.4f} | {metrics.get('test/hr@10', float('nan')):.4f} |\n"
    )
    print(row, end="")
    if not args.no_record:
        text = RESULTS.read_text() if RESULTS.exists() else ""
        with RESULTS.open("a") as fh:  # appends: concurrent benchmark runs do not overwrite each other
            if not text:
                fh.write("# Benchmark results\n")
            if "## Training (`bench_train.py`)" not in text:
                fh.write(HEADER)
            fh.write(row)


if __name__ == "__main__":
    main()
