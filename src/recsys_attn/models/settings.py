"""Typed model hyperparameters: every key of ``conf/model/*.yaml`` under ``model.*``."""

from __future__ import annotations

from dataclasses import dataclass, field

from recsys_attn.config import ConfigError


@dataclass(frozen=True)
class EvalSettings:
    """How validation/test rankings are scored (../shared/PROTOCOL.md)."""

    eval_ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    """Cut-offs K of hr@K and ndcg@K."""
    filter_seen: bool = True
    """Remove the user's history items from the ranking (the target itself always stays)."""
    sampled_eval: str | None = None
    """Opt-in sampled protocol besides the full ranking: ``uniform`` or ``popularity`` (names end ``_s100``)."""
    sampled_negatives: int = 100
    max_len: int = 200
    """Longest input sequence (the datamodule reads it from here)."""

    def __post_init__(self) -> None:
        if self.sampled_eval not in (None, "uniform", "popularity"):
            raise ConfigError(f"model.sampled_eval: expected null, uniform or popularity, got {self.sampled_eval!r}")


@dataclass(frozen=True)
class TransformerSettings(EvalSettings):
    """Encoder, loss and optimisation settings shared by SASRec and BERT4Rec."""

    hidden_size: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.2
    norm_first: bool = True
    """Pre-norm (True) or post-norm (False) transformer blocks."""
    activation: str = "gelu"
    ff_mult: int = 4
    """Feed-forward width as a multiple of hidden_size."""
    loss: str = "ce"
    """One of recsys_attn.models.losses.LOSSES: ce, bce, bpr, sampled_softmax, gbce."""
    num_negatives: int = 256
    """Negatives per position (gbce) or per batch (sampled_softmax)."""
    negative_sampling: str = "uniform"
    """sampled_softmax negatives: ``uniform`` or ``popularity`` (logQ-corrected)."""
    negatives_exclude_history: bool = True
    """Sampled negatives (bce, bpr, gbce, sampled_softmax) are never items of the user's own training
    history, as in the SASRec paper's code; false draws them from the whole catalogue."""
    gbce_t: float = 0.75
    ce_max_logits: int = 2**27
    """``ce`` loss: the largest positions x items logits block built at once (2**27 floats = 512 MiB);
    above it the softmax runs over item chunks, with the same value and gradients in less memory."""
    lr: float = 1e-3
    weight_decay: float = 0.0
    """AdamW weight decay, applied to 2-D weights only."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 0
    schedule: str = "constant"
    """Learning-rate schedule after warmup: constant, cosine or linear (decay to 0 at the last step)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule not in ("constant", "cosine", "linear"):
            raise ConfigError(f"model.schedule: expected constant, cosine or linear, got {self.schedule!r}")
        if self.negative_sampling not in ("uniform", "popularity"):
            raise ConfigError(
                f"model.negative_sampling: expected uniform or popularity, got {self.negative_sampling!r}"
            )
        if self.ce_max_logits < 1:
            raise ConfigError(f"model.ce_max_logits: must be >= 1, got {self.ce_max_logits}")
        if self.activation not in ("gelu", "relu"):
            raise ConfigError(f"model.activation: expected gelu or relu, got {self.activation!r}")


@dataclass(frozen=True)
class ClozeSettings(TransformerSettings):
    """BERT4Rec: the transformer settings plus the masking rate the datamodule uses."""

    mask_prob: float = 0.2
