"""The training samples a model learns from: what the model declares and the datamodule builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SampleKind = Literal["next", "cloze"]
SAMPLE_KINDS: tuple[SampleKind, ...] = ("next", "cloze")


@dataclass(frozen=True)
class SampleSpec:
    """How training and evaluation batches are cut for one model (``RecModule.sample_spec``).

    The model owns this contract, so no setting can pair a model with samples it was not built for.
    """

    kind: SampleKind
    """``next``: shifted next-item targets at every position (SASRec, GRU4Rec); ``cloze``: masked items
    (BERT4Rec), and evaluation inputs end with a MASK whose position is scored."""
    max_len: int
    """Longest model input; longer histories keep their most recent items."""
    mask_prob: float = 0.0
    """Cloze: the probability that each item of a training sequence is masked (next-item: 0)."""
    times: bool = False
    """The model reads each input item's timestamp (HSTU's time buckets): batches carry ``times``."""
    static: bool = False
    """Training batches of one shape, ``data.batch_size`` x the full window (no column of padding trimmed, a short
    last batch filled with empty rows), so a step can be captured once and replayed (``model.static_shapes``)."""

    def __post_init__(self) -> None:
        if self.kind not in SAMPLE_KINDS:
            raise ValueError(f"SampleSpec.kind: expected one of {', '.join(SAMPLE_KINDS)}, got {self.kind!r}")
        if self.max_len < 2:
            raise ValueError(f"SampleSpec.max_len: must be >= 2, got {self.max_len}")
        if not (0.0 < self.mask_prob <= 1.0 if self.cloze else self.mask_prob == 0.0):
            raise ValueError(f"SampleSpec.mask_prob: cloze samples need one in (0, 1], next-item samples 0: {self}")

    @property
    def cloze(self) -> bool:
        return self.kind == "cloze"

    @property
    def window(self) -> int:
        """Items per training window: next-item inputs and targets overlap, so they need one more."""
        return self.max_len if self.cloze else self.max_len + 1

    @property
    def min_items(self) -> int:
        """Training items a sequence needs to yield a target: a pair for next-item, one to mask for cloze."""
        return 1 if self.cloze else 2

    @property
    def history_len(self) -> int:
        """History items of an evaluation input (cloze keeps the last column for its MASK)."""
        return self.max_len - 1 if self.cloze else self.max_len

    def n_tokens(self, n_items: int) -> int:
        """Embedding rows the model needs: PAD, the items and (cloze) MASK."""
        return n_items + (2 if self.cloze else 1)
