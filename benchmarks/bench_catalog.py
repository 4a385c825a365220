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
import importlib.util
import resource
import time
from collections.abc import Callable

import torch
from bench_train import machine, record
from torch import Tensor

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


def liger_step(hidden: Tensor, items: Tensor, targets: Tensor) -> Callable[[], object] | None:
    """liger-kernel's fused linear cross-entropy over ``items[1:]`` (row 0 is padding, not a class), or None
    when liger-kernel is not installed or the device is not a GPU (its kernels are Triton)."""
    if hidden.device.type != "cuda" or importlib.util.find_spec("liger_kernel") is None:
        return None
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss_fn = LigerFusedLinearCrossEntropyLoss()

    def run() -> object:
        loss = loss_fn(items[1:], hidden, targets - 1)  # classes 1..V-1 renumbered from 0
        loss.backward()
        hidden.grad = items.grad = None
        return loss

    return run


def agreement(a: Callable[[], Tensor], b: Callable[[], Tensor], tensors: list[Tensor]) -> float:
    """Largest relative difference between ``a`` and ``b`` in the loss and the gradients of ``tensors``:
    ``max |x_a - x_b| / max |x_a|`` for each, the largest over all."""
    outs = []
    for fn in (a, b):
        loss = fn()
        grads = torch.autograd.grad(loss, tensors)
        outs.append([loss.detach().reshape(1), *grads])
    return max(float((x - y).abs().max() / x.abs().max().clamp_min(1e-30)) for x, y in zip(*outs, strict=True))


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
    runs: list[tuple[str, Callable[[], object]]] = [
        (f"ce forward+backward ({how})", step("ce")),
        ("sampled_softmax forward+backward (256 negatives)", step("sampled_softmax")),
        (f"full-ranking top-10 of {args.users} users", rank),
    ]
    liger = liger_step(hidden, items, targets)
    if liger is not None:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        diff = agreement(
            lambda: get_loss("ce")(hidden, targets, items, ctx),
            lambda: LigerFusedLinearCrossEntropyLoss()(items[1:], hidden, targets - 1),
            [hidden, items],
        )
        runs.insert(1, (f"liger-kernel fused linear cross-entropy forward+backward (vs ce: {diff:.1e} rel.)", liger))
    rows = ""
    for what, fn in runs:
        seconds, peak = timed(fn, device, args.repeats)
        rows += f"| {dt.date.today()} | {machine()} | `{command}` | {what} | {seconds:.3f} | {peak:.2f} |\n"
    print(rows, end="")
    if not args.no_record:
        record(rows, SECTION, HEADER)


if __name__ == "__main__":
    main()
