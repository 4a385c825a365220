"""Typed settings of the shared datamodule (every key of ``conf/data/_datamodule.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from recsys_attn.config import ConfigError

SAMPLE_KINDS = ("next", "cloze")
LOADERS = ("device", "dataloader")


@dataclass(frozen=True)
class DataSettings:
    """How prepared sequences become training and evaluation batches."""

    data_dir: str = "data"
    """Where raw files are looked up (and downloaded to)."""
    cache_dir: str = ".cache"
    """Where prepared data sets are cached."""
    sample_kind: str = "next"
    """``next``: shifted next-item targets (SASRec); ``cloze``: masked items (BERT4Rec)."""
    max_len: int = 200
    """Longest input sequence; longer histories keep their most recent items."""
    mask_prob: float = 0.2
    """Cloze: probability that each item of a training sequence is masked."""
    cloze_last_item_samples: bool = True
    """Cloze: one extra sample per user per epoch with only the last item masked (BERT4Rec code)."""
    window_stride: int | None = None
    """Next-item: extra windows every ``window_stride`` items over longer histories (None = off)."""
    batch_size: int = 128
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
        checks = [
            (self.sample_kind in SAMPLE_KINDS, "sample_kind", f"one of {SAMPLE_KINDS}"),
            (self.loader in LOADERS, "loader", f"one of {LOADERS}"),
            (self.max_len >= 2, "max_len", "an integer >= 2"),
            (0.0 < self.mask_prob <= 1.0, "mask_prob", "a probability in (0, 1]"),
            (
                self.batch_size >= 1 and self.eval_batch_size >= 1,
                "batch_size",
                "positive batch sizes",
            ),
            (
                self.window_stride is None or self.window_stride >= 1,
                "window_stride",
                "null or >= 1",
            ),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ConfigError(f"data.{key}: expected {expected}, got {getattr(self, key)!r}")
