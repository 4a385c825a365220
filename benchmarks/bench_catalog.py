"""Loss and ranking cost on a large catalogue (default 1M items), recorded in benchmarks/RESULTS.md.

    python benchmarks/bench_catalog.py                         # 1M items, 2,048 positions, CPU or the GPU
    python benchmarks/bench_catalog.py --items 5000000 --positions 16384 --device cuda

Times one forward + backward of each loss over random hidden states and a random item table
(``ce`` in item chunks under the default ``ce_max_logits``, ``sampled_softmax`` with 256 negatives),
and one full-ranking top-10 for a batch of users, with the peak memory each needs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time
from collections.abc import Callable

import torch
from bench_train import machine, record

from recsys_attn.models.losses import LossContext, get_loss

SECTION = "## Large catalogues (`bench_catalog.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | command | what | seconds (median) | peak memory GiB |\n"
    "|---|---|---|---|---|---|\n"
)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn`` over ``repeats`` runs (after one warm-up) and the peak memory in GiB."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:  # the process's peak RSS so far (Linux: KiB)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return sorted(times)[len(times) // 2], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--positions", type=int, default=2048, help="positions with a target per step")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users", type=int, default=256, help="users ranked at once")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)

    g = torch.Generator(device="cpu").manual_seed(0)
    items = (torch.randn(args.items + 1, args.dim, generator=g) * 0.1).to(device).requires_grad_()  # [V, D]
    hidden = torch.randn(args.positions, args.dim, generator=g).to(device).requires_grad_()  # [N, D]
    targets = torch.randint(1, args.items + 1, (args.positions,), generator=g).to(device)  # [N]
    users = torch.randn(args.users, args.dim, generator=g).to(device)  # [U, D]
    ctx = LossContext(args.items)

    def step(name: str) -> Callable[[], object]:
        def run() -> object:
            loss = get_loss(name)(hidden, targets, items, ctx)
            loss.backward()
            hidden.grad = items.grad = None
            return loss

        return run

    def rank() -> object:
        with torch.no_grad():
            return (users @ items.T).topk(10, dim=1)  # [U, 10]

    command = (
        f"python benchmarks/bench_catalog.py --items {args.items} --positions {args.positions} "
        f"--dim {args.dim} --users {args.users}"
    )
    chunked = args.positions * (args.items + 1) > ctx.ce_max_logits
    how = f"in chunks of {ctx.ce_max_logits // args.positions:,} items" if chunked else "one logits block"
    rows = ""
    for what, fn in [
        (f"ce forward+backward ({how})", step("ce")),
        ("sampled_softmax forward+backward (256 negatives)", step("sampled_softmax")),
        (f"full-ranking top-10 of {args.users} users", rank),
    ]:
        seconds, peak = timed(fn, device, args.repeats)
        rows += f"| {dt.date.today()} | {machine()} | `{command}` | {what} | {seconds:.3f} | {peak:.2f} |\n"
    print(rows, end="")
    if not args.no_record:
        record(rows, SECTION, HEADER)


if __name__ == "__main__":
    main()
