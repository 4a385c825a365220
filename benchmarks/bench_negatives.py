"""Per-position negatives' logits two ways: gathered item vectors vs the whole table's logits, forward + backward.

``losses.gathered_logits`` picks the product against the whole table while ``V <= GATHER_RATIO * k``; this
benchmark measures where the two cross over on this machine (interleaved, so a busy machine slows both alike).

    python benchmarks/bench_negatives.py [--positions 1024] [--hidden 64 256] [--repeats 5]

Prints one row per (hidden, items) with both times and ``items / k`` and, last, a JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import Tensor


def gather_way(hidden: Tensor, items: Tensor, ids: Tensor) -> Tensor:
    return torch.einsum("nd,nkd->nk", hidden, items[ids])  # [N, k]


def table_way(hidden: Tensor, items: Tensor, ids: Tensor) -> Tensor:
    return (hidden @ items.T).gather(1, ids)  # [N, k]


def timed(fn: object, hidden: Tensor, items: Tensor, ids: Tensor) -> float:
    start = time.perf_counter()
    fn(hidden, items, ids).logsumexp(1).mean().backward()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1024)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 4000, 16000, 64000, 256000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for d in args.hidden:
        for v in args.items:
            hidden = torch.randn(args.positions, d, requires_grad=True)  # [N, D]
            items = torch.randn(v, d, requires_grad=True)  # [V, D]
            ids = torch.randint(0, v, (args.positions, args.negatives))  # [N, k]
            times: dict[str, list[float]] = {"gather": [], "table": []}
            for _ in range(args.repeats + 1):  # the first round warms up
                for name, fn in (("gather", gather_way), ("table", table_way)):
                    times[name].append(timed(fn, hidden, items, ids))
            best = {name: min(t[1:]) for name, t in times.items()}
            row = {"hidden": d, "items": v, "items_per_negative": v / args.negatives, **best}
            row["table_over_gather"] = best["table"] / best["gather"]
            print(
                f"D={d:4d} V={v:7d} V/k={v / args.negatives:7.1f} gather {best['gather'] * 1e3:8.2f} ms  "
                f"table {best['table'] * 1e3:8.2f} ms  table/gather {row['table_over_gather']:.2f}"
            )
            rows.append(row)
    print(
        json.dumps(
            {"positions": args.positions, "negatives": args.negatives, "threads": torch.get_num_threads(), "rows": rows}
        )
    )


if __name__ == "__main__":
    main()
