"""Full-size training epochs, this checkout against a reference commit, side by side on one machine.

    python benchmarks/bench_epoch.py                      # SASRec-CE and BERT4Rec on ml-1m vs 85f9768
    python benchmarks/bench_epoch.py --ref 85f9768 --models sasrec --epochs 3 --rounds 2

Machines differ (and so does the load on a shared one), so a speed-up is only meaningful against the
old code measured in the same session: the reference commit is checked out into a temporary git
worktree and both run the real entry point in subprocesses, alternating (ref, new, new, ref, ...) so
slow drifts in the machine's load hit both. Validation is off (``limit_val_batches=0``) and each run's
median training-epoch time is read from its ``metrics.json``. Rows go to benchmarks/RESULTS.md.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import REPO, machine, record, this_commit

SECTION = "## Epoch speed against a reference commit (`bench_epoch.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | model | settings | ref | ref s/epoch | this s/epoch | speed-up | this commit |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)
COMMON = ["data=ml-1m", "data.batch_size=128", "model.max_len=200", "model.hidden_size=64", "model.num_blocks=2"]
MODELS = {
    # the full-size presets (experiment=sasrec_ml-1m / bert4rec_ml-1m), spelled out so the old code runs them too
    "sasrec": ["model=sasrec", *COMMON, "model.num_heads=1", "model.dropout=0.1", "model.loss=ce"],
    "bert4rec": [
        "model=bert4rec",
        *COMMON,
        "model.num_heads=2",
        "model.dropout=0.1",
        "model.ff_mult=4",
        "model.norm_first=false",
        "data.cloze_last_item_samples=false",
    ],
}


def epoch_run(src: Path, overrides: list[str], epochs: int) -> tuple[float, float]:
    """Median training-epoch seconds and peak resident MiB of ``recsys_attn.train`` run from the package in ``src``."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            *overrides,
            f"trainer.max_epochs={epochs}",
            "trainer.limit_val_batches=0",
            "trainer.enable_progress_bar=false",
            "logger=none",
            "callbacks=none",
            "test=false",
            f"hydra.run.dir={tmp}/run",
        ]
        env = {**os.environ, "PYTHONPATH": str(src)}
        proc = subprocess.Popen([sys.executable, "-m", "recsys_attn.train", *args], env=env, cwd=tmp)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    return float(metrics["time/epoch_s_median"]), usage.ru_maxrss / 1024  # ru_maxrss: KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="85f9768", help="reference commit (default: 85f9768)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (the median is taken)")
    parser.add_argument("--rounds", type=int, default=1, help="ref/this pairs per model, alternating")
    parser.add_argument("--no-record", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    this = this_commit()
    with tempfile.TemporaryDirectory() as tmp:
        ref_tree = Path(tmp) / "ref"
        subprocess.run(["git", "worktree", "add", "--detach", str(ref_tree), args.ref], cwd=REPO, check=True)
        try:
            rows = ""
            for name in args.models:
                times: dict[str, list[float]] = {"ref": [], "this": []}
                for r in range(args.rounds):
                    order = [("ref", ref_tree), ("this", REPO)]
                    for label, tree in order if r % 2 == 0 else order[::-1]:
                        times[label].append(epoch_run(tree / "src", MODELS[name], args.epochs)[0])
                        print(f"[bench_epoch] {name} {label}: {times[label][-1]:.1f} s/epoch", file=sys.stderr)
                ref_s, this_s = statistics.median(times["ref"]), statistics.median(times["this"])
                settings = " ".join(MODELS[name])
                rows += (
                    f"| {dt.date.today()} | {machine()} | {name} | `{settings}` | {args.ref} | {ref_s:.1f} "
                    f"| {this_s:.1f} | {ref_s / this_s:.2f}x | {this} |\n"
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(ref_tree)], cwd=REPO, check=False)
    print(rows)
    if not args.no_record:
        record(rows, SECTION, HEADER)


if __name__ == "__main__":
    main()
