"""Training speed and quality of a run, recorded in benchmarks/RESULTS.md.

    python benchmarks/bench_train.py                                   # SASRec, ml-1m, 2 epochs, full size
    python benchmarks/bench_train.py --epochs 200 -- experiment=sasrec_ml-1m trainer=gpu
    python benchmarks/bench_train.py --no-record -- model=bert4rec trainer.precision=bf16-mixed
    python benchmarks/bench_train.py --epochs 200 -- experiment=sasrec_ml-1m callbacks=default   # early stopping
    python benchmarks/bench_train.py --epochs 200 --target 0.18 --gpu-csv benchmarks/gpu.csv -- \
        experiment=sasrec_ml-1m trainer=gpu callbacks=default trainer.max_time=00:00:00:45

Runs the real entry point in a subprocess (the data cache warm beforehand), then records the median
seconds per training epoch, the fit time and test metrics, with the command, machine and date.
Runs log nowhere and keep no checkpoints (``logger=none callbacks=none``) unless the overrides choose a
logger or callbacks; ``--target`` logs to CSV (``logger=csv``) to time the training to that val/ndcg@10, and
``--gpu-csv`` appends the run's row to that machine-readable file (benchmarks/gpu_csv.py).
``BENCH_RESULTS=path`` records into another file than benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import gpu_csv
import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).with_name("RESULTS.md"))
SECTION = "## Training (`bench_train.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | command | epochs | s/epoch (median) | fit s | test/ndcg@10 | test/hr@10 |\n"
    "|---|---|---|---|---|---|---|---|\n"
)


def machine() -> str:
    """The OS, core count, CPU (model and widest vector unit) and GPU name (when there is one) of this machine."""
    from recsys_attn.run.hardware import cpu_description

    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    cpu = cpu_description()
    return f"{platform.platform()}, {os.cpu_count()} cores{', ' + cpu if cpu else ''}{gpu}"


def this_commit() -> str:
    """This checkout's short commit, ``+changes`` when ``src`` or ``conf`` differ from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "src", "conf"], cwd=REPO, capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def run_train(
    epochs: int, overrides: list[str], target: float | None = None
) -> tuple[dict[str, float], str, dict[str, object]]:
    """Run ``recsys_attn.train`` for ``epochs`` in a subprocess: its metrics, the command as shown, its config.

    With a ``target`` the run logs to CSV and the metrics gain ``time/train_s_to_target`` (nan: not reached).
    """
    chosen = {o.split("=", 1)[0] for o in overrides}
    quiet = [f"{group}=none" for group in ("logger", "callbacks") if group not in chosen]
    if target is not None:
        if "logger" in chosen and "logger=csv" not in overrides:
            raise SystemExit("--target reads the run's CSV log: leave `logger` out of the overrides or set logger=csv")
        quiet = [q if q != "logger=none" else "logger=csv" for q in quiet]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        full = [f"trainer.max_epochs={epochs}", *quiet, "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"]
        full += overrides
        subprocess.run([sys.executable, "-m", "recsys_attn.train", *full], check=True)
        metrics = json.loads((run / "metrics.json").read_text())
        if target is not None:
            metrics["time/train_s_to_target"] = gpu_csv.train_seconds_to_target(run / "csv" / "metrics.csv", target)
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    shown = " ".join(o for o in full if not o.startswith("hydra.run.dir"))
    return metrics, f"python -m recsys_attn.train {shown}", config


def gpu_row(metrics: dict[str, float], command: str, config: dict[str, object], target: float) -> dict[str, object]:
    """The benchmarks/gpu.csv row of a run (gpu_csv.COLUMNS), on this machine's GPU ("none" without one)."""
    import torch

    model = config["model"]
    data = config["data"]
    assert isinstance(model, dict) and isinstance(data, dict)
    preset = next((o.split("=", 1)[1] for o in command.split() if o.startswith("experiment=")), "")
    return {
        "date": dt.date.today().isoformat(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "model": str(model["_target_"]).rsplit(".", 1)[-1],
        "preset": preset,
        "batch": data["batch_size"],
        "s_per_epoch_train": metrics["time/epoch_s_median"],
        "s_per_val": metrics.get("time/val_s_median", float("nan")),
        "epochs": int(metrics["train/epochs"]),
        "seconds_to_target": metrics["time/train_s_to_target"],
        "target_ndcg@10": target,
        "test_ndcg@10": metrics.get("test/ndcg@10", float("nan")),
        "commit": this_commit(),
        "command": command,
    }


def table_row(metrics: dict[str, float], command: str) -> str:
    """One RESULTS.md row of the training table."""
    return (
        f"| {dt.date.today()} | {machine()} | `{command}` | {metrics['train/epochs']:.0f} "
        f"| {metrics['time/epoch_s_median']:.2f} | {metrics['time/fit_s']:.1f} "
        f"| {metrics.get('test/ndcg@10', float('nan')):.4f} | {metrics.get('test/hr@10', float('nan')):.4f} |\n"
    )


def record(lines: str, section: str = SECTION, header: str = HEADER) -> None:
    """Add ``lines`` as the last rows of the table under ``section`` in RESULTS.md (created when missing).

    The file is locked while it is rewritten, so concurrent benchmark runs do not lose each other's rows.
    """
    with RESULTS.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        text = fh.read() or "# Benchmark results\n"
        fh.seek(0)
        fh.truncate()
        fh.write(with_rows(text, lines, section, header))


def with_rows(text: str, lines: str, section: str, header: str) -> str:
    """``text`` with ``lines`` after the last row of the first table under ``section`` (appended if absent)."""
    if section not in text:
        return text.rstrip("\n") + "\n" + header + lines
    out = text.splitlines(keepends=True)
    i = next(n for n, line in enumerate(out) if line.startswith(section))
    while i < len(out) and not out[i].startswith("|"):  # to the table
        i += 1
    while i < len(out) and out[i].startswith("|"):  # past its rows
        i += 1
    return "".join([*out[:i], lines, *out[i:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--metrics-json", type=Path, help="also write the run's metrics.json here")
    parser.add_argument("--target", type=float, help="time the training to this val/ndcg@10 (logs to CSV)")
    parser.add_argument("--gpu-csv", type=Path, help="append the run's row to this CSV (needs --target)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for recsys_attn.train")
    args = parser.parse_args()
    if args.gpu_csv and args.target is None:
        parser.error("--gpu-csv needs --target (its seconds_to_target column)")
    metrics, command, config = run_train(args.epochs, args.overrides, args.target)
    if args.metrics_json:
        args.metrics_json.write_text(json.dumps({"command": command, **metrics}, indent=1))
    if args.gpu_csv:
        gpu_csv.append_row(args.gpu_csv, gpu_row(metrics, command, config, args.target))
    row = table_row(metrics, command)
    print(row, end="")
    if not args.no_record:
        record(row)


if __name__ == "__main__":
    main()
