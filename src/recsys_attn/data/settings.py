"""Typed settings of the shared datamodule (every key of ``conf/data/_datamodule.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from recsys_attn.settings import MAX_SEED, check_ranges, check_types

LOADERS = ("device", "dataloader")


@dataclass(frozen=True)
class DataSettings:
    """How prepared sequences become training and evaluation batches.

    What the batches hold (next-item or cloze samples, their length, the mask rate) is the model's to
    say (``RecModule.sample_spec``), so it has no key here.
    """

    data_dir: str = "data"
    """Where raw files are looked up (and downloaded to)."""
    cache_dir: str = ".cache"
    """Where prepared data sets are cached."""
    cloze_last_item_samples: bool = True
    """Cloze: one extra sample per user per epoch with only the last item masked (BERT4Rec code)."""
    window_stride: int | None = None
    """Next-item: extra windows every ``window_stride`` items over longer histories (None = off)."""
    batch_size: int = 128
    length_grouping: int = 8
    """Training batches are cut from runs of ``length_grouping x batch_size`` shuffled samples sorted by
    length (less padding, the loss scaled so each position weighs as in a random batch); 1 = random batches."""
    steps_per_call: int = 1
    """Training batches handed to the model at once; it takes one optimiser step for each, in order, with the same
    random draws as one at a time. Lightning's per-batch loop (fetch, transfer, hooks, callbacks, logging) then runs
    once per ``steps_per_call`` steps: the host overhead a small model's step pays (benchmarks/bench_overhead.py).
    Counts in batches (``trainer.limit_train_batches``, ``val_check_interval``, ``log_every_n_steps``, the loggers'
    step axis) count calls; ``trainer.max_steps``, ``global_step`` and the learning-rate schedule count optimiser
    steps. Needs the model's own optimisation
    (no ``trainer.gradient_clip_val`` or ``accumulate_grad_batches``) and one process (DDP syncs gradients once per
    forward call of its wrapper)."""
    eval_batch_size: int = 256
    loader: str = "device"
    """``device``: the whole data on the accelerator, batches built there; ``dataloader``: workers."""
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    max_eval_users: int | None = None
    """Evaluate only the first N users of each evaluation set (None = all)."""
    max_train_users: int | None = None
    """Train only on the first N users' sequences (None = all)."""
    seed: int = 0
    """Seeds the shuffling and masking streams (set from the top-level ``seed``)."""

    def __post_init__(self) -> None:
        check_types(self, "data")
        checks = [
            ("window_stride", self.window_stride is None or self.window_stride >= 1, "expected null or >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("length_grouping", self.length_grouping >= 1, "must be >= 1 (1 = random batches)"),
            ("steps_per_call", self.steps_per_call >= 1, "must be >= 1 (1 = one batch a call)"),
            ("eval_batch_size", self.eval_batch_size >= 1, "must be >= 1"),
            ("loader", self.loader in LOADERS, f"expected one of {', '.join(LOADERS)}"),
            ("num_workers", self.num_workers >= 0, "must be >= 0"),
            ("max_eval_users", self.max_eval_users is None or self.max_eval_users >= 1, "expected null (all) or >= 1"),
            (
                "max_train_users",
                self.max_train_users is None or self.max_train_users >= 1,
                "expected null (all) or >= 1",
            ),
            ("seed", 0 <= self.seed <= MAX_SEED, f"must be in [0, {MAX_SEED}]"),
        ]
        check_ranges(self, "data", checks)
