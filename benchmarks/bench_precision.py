"""Mixed-precision speed-up: the same run in fp32 and in bf16-mixed, recorded in benchmarks/RESULTS.md.

    python benchmarks/bench_precision.py                                   # BERT4Rec, ml-1m, GPU, 5 epochs
    python benchmarks/bench_precision.py --epochs 3 -- model=sasrec
    python benchmarks/bench_precision.py --precisions 32-true 16-mixed -- trainer=cpu

Each precision runs ``recsys_attn.train`` in its own subprocess with the same seed and overrides
(default ``model=bert4rec trainer=gpu trainer.devices=1``); the table gets one row per precision (as
``bench_train.py`` writes them) and a speed-up line: fp32 median s/epoch over each other one's.
"""

from __future__ import annotations

import argparse
import datetime as dt

from bench_train import HEADER, SECTION, machine, record, run_train, table_row

SPEEDUP_SECTION = "## Mixed precision (`bench_precision.py`)"
SPEEDUP_HEADER = (
    f"\n{SPEEDUP_SECTION}\n\n"
    "| date | machine | base command | precision | s/epoch (median) | speed-up over first |\n"
    "|---|---|---|---|---|---|\n"
)
DEFAULT_OVERRIDES = ["model=bert4rec", "trainer=gpu", "trainer.devices=1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (the first one is warm-up)")
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for recsys_attn.train")
    args = parser.parse_args()
    overrides = args.overrides or DEFAULT_OVERRIDES

    rows, speed, base_command = "", [], ""
    for precision in args.precisions:
        metrics, command, _ = run_train(args.epochs, [*overrides, f"trainer.precision={precision}"])
        rows += table_row(metrics, command)
        speed.append((precision, metrics["time/epoch_s_median"]))
        base_command = base_command or command.rsplit(" trainer.precision=", 1)[0]
    first = speed[0][1]
    lines = "".join(
        f"| {dt.date.today()} | {machine()} | `{base_command}` | {p} | {s:.3f} | {first / s:.2f}x |\n" for p, s in speed
    )
    print(rows + lines, end="")
    if not args.no_record:
        record(rows, SECTION, HEADER)
        record(lines, SPEEDUP_SECTION, SPEEDUP_HEADER)


if __name__ == "__main__":
    main()
