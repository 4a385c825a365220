"""Where a full-size training step spends its time: torch.profiler over real batches of a preset.

    python benchmarks/profile_step.py                                   # experiment=sasrec_ml-1m, 12 steps
    python benchmarks/profile_step.py bert4rec_ml-1m --steps 8 -- model.dropout=0.0
    python benchmarks/profile_step.py sasrec_ml-1m --no-record          # print only
    python benchmarks/profile_step.py sasrec_ml-1m --device cuda --steps 30 --trace /tmp/step.json
    python benchmarks/profile_step.py sasrec_ml-1m --compile            # the encoder under torch.compile
    python benchmarks/profile_step.py sasrec_ml-1m --bf16               # steps under bf16 autocast
    python benchmarks/profile_step.py sasrec_ml-1m --device cuda --sync-check -- model.static_shapes=true

Composes ``experiment=<preset>`` as ``train`` does, builds the datamodule and model, and runs ``--steps``
training steps (batch building on the device path, forward, backward, the model's AdamW, fused on a GPU) after two
warm-up steps, under ``torch.profiler``. Prints the operators by self CPU time, the steps' wall time and the optimiser
step's share of it (on a GPU also the launches a step: what capturing more of the step could still save); the top
rows go to benchmarks/RESULTS.md with the command, machine and date. On a GPU (``--device cuda``) it also prints the
kernels by GPU time and how busy they kept the GPU: the rest of a step's wall time is per-step overhead
(Python, kernel launches, host-device syncs). ``--compile`` wraps the encoder in ``torch.compile`` (dynamic
shapes: batch lengths vary); compilation happens in the warm-up steps, which are not timed. ``--bf16`` runs
the steps under bf16 autocast, as ``trainer.precision=bf16-mixed`` does. ``--sync-check`` (GPU only) runs the
profiled steps under ``torch.cuda.set_sync_debug_mode("error")``: any wait of the host for the device in them
(building the batch where the data lives, forward, backward, the optimiser step) fails the run, naming the
operation; with ``model.static_shapes=true`` and the ``device`` loader a step should have none. Measure on a
quiet machine: a busy one inflates every figure (the load average at start is recorded beside the rows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import machine, record

SECTION = "## Where a training step spends its time (`profile_step.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| date | machine | command | load at start | ms/step | est. s/epoch | top operators (share of self CPU time) |\n"
    "|---|---|---|---|---|---|---|\n"
)


def build(preset: str | None, overrides: list[str]) -> tuple[Any, Any]:
    """The set-up datamodule and model of ``experiment=<preset>`` (None: none), as ``recsys_attn.train`` builds them."""
    import hydra
    from hydra import compose, initialize_config_dir

    from recsys_attn.run.entry import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        preset_override = [f"experiment={preset}"] if preset else []
        cfg = compose("train", overrides=[*preset_override, "logger=none", *overrides])
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = hydra.utils.instantiate(
        cfg.model, n_items=datamodule.n_items, item_popularity=datamodule.item_popularity, _convert_="all"
    )
    datamodule.connect(model.sample_spec)
    return datamodule, model


Shares = list[tuple[str, float]]

OPTIMISER_RANGE = "optimiser step"
"""The profiler range around ``optimizer.step()``: its host time tells whether capturing the step would pay."""

LAUNCHES = frozenset(
    {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch"}
)
"""The runtime calls that start work on a GPU: one per kernel, or one per replayed CUDA graph."""


class Profile(NamedTuple):
    """What one profiling run measured."""

    seconds: float  # wall seconds per step
    n_batches: int  # training batches per epoch
    shares: Shares  # the top operators with their share of self CPU time
    busy: float | None  # GPU kernel time over wall time (None on the CPU)
    tables: str  # the operator tables as printed
    optimiser: float  # the optimiser step's host time over the step's wall time
    launches: float | None  # kernel and CUDA-graph launches a step (None on the CPU)


def profile(
    preset: str,
    steps: int,
    overrides: list[str],
    rows: int,
    device: str,
    trace: Path | None,
    compile_: bool = False,
    bf16: bool = False,
    warmup: int = 2,
    sync_check: bool = False,
) -> Profile:
    """Profile ``steps`` training steps of ``preset`` on ``device``; write a Chrome trace to ``trace`` if given.

    ``compile_``: the encoder runs under ``torch.compile(dynamic=True)``, compiled during the warm-up steps.
    ``bf16``: forward and loss under bf16 autocast (the backward follows the forward's dtypes). ``warmup``: steps
    run before the profiled ones (``model.static_shapes=true`` on a GPU records its CUDA graphs in the first few).
    ``sync_check``: on a GPU, a host-device sync in the profiled steps raises (``torch.cuda.set_sync_debug_mode``).
    """
    import torch
    from lightning.fabric.utilities.apply_func import move_data_to_device
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    from recsys_attn.models.optimiser import fused_adam_applies

    on = torch.device(device)
    cuda = on.type == "cuda"
    datamodule, model = build(preset, overrides)
    model.log = lambda *args, **kwargs: None  # no trainer attached: logging is not what is measured
    model.to(on)
    if compile_:
        model.encoder.compile(dynamic=True)  # as model.compile=true does
    # the optimiser training steps: AdamW over the model's groups, fused on a GPU (no clipping, fp32 or bf16)
    optimizer = model.build_optimiser(fused=fused_adam_applies({on.type}, None, "bf16-mixed" if bf16 else "32"))
    loader = datamodule.train_dataloader()
    requests = iter(loader)
    batches = [move_data_to_device(next(requests), on) for _ in range(steps + warmup)]
    model.train()

    def step(request: Any) -> None:
        batch = datamodule.on_after_batch_transfer(request, 0)
        with torch.autocast(on.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.training_step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with record_function(OPTIMISER_RANGE):
            optimizer.step()

    for request in batches[:warmup]:
        step(request)
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with torch_profile(activities=activities) as prof:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        if cuda and sync_check:
            torch.cuda.set_sync_debug_mode("error")
        try:
            for request in batches[warmup:]:
                step(request)
        finally:
            if cuda and sync_check:
                torch.cuda.set_sync_debug_mode("default")
        if cuda:
            torch.cuda.synchronize()  # the steps end when their kernels do
        seconds = (time.perf_counter() - start) / steps
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages)
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    shares = [(short_name(e.key), e.self_cpu_time_total / total) for e in top]
    tables = averages.table(sort_by="self_cpu_time_total", row_limit=30)
    ranges = [e for e in averages if e.key == OPTIMISER_RANGE]
    optimiser = sum(e.cpu_time_total for e in ranges) / 1e6 / steps / seconds
    busy = launches = None
    if cuda:
        launches = sum(e.count for e in averages if e.key in LAUNCHES) / steps
        # the kernels' time per step (the profiler counts microseconds) over the step's wall time
        kernels = [e for e in averages if e.device_type == DeviceType.CUDA and not e.is_user_annotation]
        busy = sum(e.self_device_time_total for e in kernels) / 1e6 / steps / seconds
        tables += "\n" + averages.table(sort_by="self_device_time_total", row_limit=20)
    return Profile(seconds, len(loader), shares, busy, tables, optimiser, launches)


def short_name(key: str) -> str:
    """An operator's name for the table: a compiled graph's ``## Call CompiledFxGraph <hash> ##`` shortened."""
    if key.startswith("## Call CompiledFxGraph"):
        return f"compiled graph {key.split()[3][:6]}"
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", default="sasrec_ml-1m", help="an experiment of conf/experiment/")
    parser.add_argument("--steps", type=int, default=12, help="profiled training steps (after the warm-up steps)")
    parser.add_argument("--warmup", type=int, default=2, help="unprofiled steps first (compilation, CUDA graphs)")
    parser.add_argument("--top", type=int, default=8, help="operators recorded in RESULTS.md")
    parser.add_argument("--no-record", action="store_true", help="print only; RESULTS.md is left as it is")
    parser.add_argument("--device", default="cpu", help="where the model, the data and the steps run: cpu, cuda")
    parser.add_argument("--compile", action="store_true", help="run the encoder under torch.compile")
    parser.add_argument("--bf16", action="store_true", help="run the steps under bf16 autocast")
    parser.add_argument("--sync-check", action="store_true", help="GPU: fail on any host-device sync in the steps")
    parser.add_argument("--trace", type=Path, help="also write a Chrome trace (Perfetto, chrome://tracing) here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides after --, e.g. -- model.dropout=0.0")
    args = parser.parse_intermixed_args()  # overrides after the options too (plain parse_args refuses them)
    load = os.getloadavg()[0]
    p = profile(
        args.preset,
        args.steps,
        args.overrides,
        args.top,
        args.device,
        args.trace,
        args.compile,
        args.bf16,
        args.warmup,
        args.sync_check,
    )
    print(p.tables)
    if args.sync_check:
        cuda = args.device.startswith("cuda")
        print(
            f"sync check: {args.steps} steps without a host-device sync" if cuda else "sync check: GPU only (CPU run)"
        )
    epoch = p.seconds * p.n_batches
    print(f"{p.seconds * 1000:.1f} ms/step x {p.n_batches} batches = {epoch:.2f} s/epoch (training steps only)")
    busy = "" if p.busy is None else f"GPU kernels busy {p.busy:.0%} of the wall time; "
    launched = "" if p.launches is None else f"{p.launches:.0f} launches a step; "
    busy += launched + f"optimiser step {p.optimiser:.0%} of the wall time; "
    print(busy.rstrip("; "))
    if args.no_record:
        return
    device = [] if args.device == "cpu" else [f"--device {args.device}"]
    flags = [
        flag
        for flag, on in (("--compile", args.compile), ("--bf16", args.bf16), ("--sync-check", args.sync_check))
        if on
    ]
    command = " ".join(
        ["python benchmarks/profile_step.py", args.preset, f"--steps {args.steps}", *device, *flags, *args.overrides]
    )
    ops = busy + ", ".join(f"{name} {share:.0%}" for name, share in p.shares)
    row = (
        f"| {dt.date.today()} | {machine()} | `{command}` | {load:.1f} | {p.seconds * 1000:.1f} | {epoch:.2f} | {ops} |"
    )
    record(row + "\n", SECTION, HEADER)


if __name__ == "__main__":
    main()
