"""Typed model hyperparameters: every key of ``conf/model/*.yaml`` under ``model.*``."""

from __future__ import annotations

from dataclasses import dataclass, field

from recsys_attn.models.encoder import BLOCK_LAYOUTS, INITS, POSITIONS
from recsys_attn.models.item_embedding import FUSIONS, SIDES
from recsys_attn.models.losses import CE_MAX_LOGITS, LOSSES
from recsys_attn.settings import check_ranges, check_types


@dataclass(frozen=True)
class EvalSettings:
    """How validation/test rankings are scored (docs/PROTOCOL.md)."""

    eval_ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    """Cut-offs K of hr@K and ndcg@K."""
    filter_seen: bool = True
    """Remove the user's history items from the ranking (the target itself always stays)."""
    sampled_eval: str | None = None
    """Opt-in sampled protocol besides the full ranking: ``uniform`` or ``popularity`` (names end ``_s100``)."""
    sampled_negatives: int = 100
    max_len: int = 200
    """Longest input sequence; the model's ``sample_spec`` hands it to the datamodule."""
    bootstrap: int = 1000
    """Bootstrap samples over users for the 95% interval of each metric (``<metric>_lo``/``_hi``); 0 = none."""
    bootstrap_seed: int = 0
    history_edges: list[int] | None = None
    """Upper bounds (inclusive) of the history-length segments but the last; null = tertiles of the users."""
    popularity_shares: list[float] = field(default_factory=lambda: [0.2, 0.8])
    """Target segments: head = most popular items making the first share of training interactions, tail =
    the items after the second share (and items never trained on), torso = the rest."""

    def __post_init__(self) -> None:
        check_types(self, "model")  # every field of every subclass, before any range check reads it
        checks = [
            ("eval_ks", len(self.eval_ks) > 0 and min(self.eval_ks) >= 1, "expected a non-empty list of integers >= 1"),
            (
                "sampled_eval",
                self.sampled_eval in (None, "uniform", "popularity"),
                "expected null, uniform or popularity",
            ),
            ("sampled_negatives", self.sampled_negatives >= 1, "must be >= 1"),
            ("max_len", self.max_len >= 2, "must be >= 2"),
            ("bootstrap", self.bootstrap >= 0, "must be >= 0 (0 turns the intervals off)"),
            ("bootstrap_seed", self.bootstrap_seed >= 0, "must be >= 0"),
            (
                "history_edges",
                self.history_edges is None
                or (len(self.history_edges) >= 1 and self.history_edges == sorted(set(self.history_edges))),
                "expected null or an increasing list of integers",
            ),
            (
                "popularity_shares",
                len(self.popularity_shares) == 2 and 0.0 < self.popularity_shares[0] < self.popularity_shares[1] < 1.0,
                "expected two shares 0 < head < tail < 1, e.g. [0.2, 0.8]",
            ),
        ]
        check_ranges(self, "model", checks)


SIMILARITIES = ("dot", "cosine")
"""Values of ``model.similarity``."""


@dataclass(frozen=True)
class SequentialSettings(EvalSettings):
    """Loss and optimisation settings of every sequence recommender, and the two sizes every encoder has."""

    hidden_size: int = 64
    """Width of the item embeddings and of the encoder's hidden states (they are scored against each other)."""
    dropout: float = 0.2
    loss: str = "ce"
    """One of recsys_attn.models.losses.LOSSES: ce, bce, bpr, sampled_softmax, mixed_softmax, gbce."""
    num_negatives: int = 256
    """Negatives per position (gbce) or per batch (sampled_softmax; mixed_softmax: its uniform ones)."""
    in_batch_negatives: int | None = 256
    """mixed_softmax: how many of the batch's targets (drawn among its positions) serve as every position's
    negatives besides the ``num_negatives`` uniform ones; 0 = none (a uniform sampled softmax); None = all of them,
    whose logits grow with the square of the positions in a batch (128 sequences of 200: 25,600 squared)."""
    negative_sampling: str = "uniform"
    """sampled_softmax negatives: ``uniform`` or ``popularity`` (logQ-corrected)."""
    negatives_exclude_history: bool = True
    """Sampled negatives (bce, bpr, gbce, sampled_softmax) are never items of the user's own training
    history, as in the SASRec paper's code; false draws them from the whole catalogue."""
    gbce_t: float = 0.75
    ce_max_logits: int = CE_MAX_LOGITS
    """``ce`` loss: the largest positions x items logits block built at once (2**27 floats = 512 MiB);
    above it the softmax runs over item chunks, with the same value and gradients in less memory."""
    lr: float = 1e-3
    weight_decay: float = 0.0
    """AdamW weight decay, applied to 2-D weights only."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 0
    schedule: str = "constant"
    """Learning-rate schedule after warmup: constant, cosine or linear (decay to 0 at the last step)."""
    compile: bool = False
    """Train with the encoder under ``torch.compile`` (dynamic shapes; compiled at the first batches of a fit;
    ``evaluate`` and ``predict`` run it eager). For GPUs, where fusing kernels saves launches; on 2 CPU cores
    it was 0.93x (benchmarks/RESULTS.md)."""
    feature_fusion: str = "sum"
    """With item features (``features=...``): how an item's feature vectors join its id vector: ``sum``,
    ``concat`` (projected back to ``hidden_size``) or ``gated`` (``models.item_embedding.FUSIONS``)."""
    feature_sides: str = "both"
    """With item features: fused into the items a sequence reads (``input``), the item vectors its states are
    scored against (``output``: cold items score through their features), or ``both``."""
    feature_id_dropout: float = 0.0
    """With item features: the share of items whose id vector each training step leaves out (DropoutNet, Volkovs
    et al. 2017), so that the features alone learn to score an item, as they must for a cold one; 0 = off."""
    similarity: str = "dot"
    """How a state scores an item, in training and serving: ``dot`` (their dot product) or ``cosine`` (both
    L2-normalised, divided by ``temperature``: HSTU's reference scoring)."""
    temperature: float = 0.05
    """``similarity=cosine``: the divisor of the cosine (HSTU's reference: 0.05)."""
    item_dropout: float = 0.0
    """Dropout on the item table itself (every element of the id vectors, rescaled), one mask per training step
    shared by the items a sequence reads and the items its states are scored against: eSASRec's reference
    (RecTools' item net drops out the table both sides use); 0 = off."""
    negatives_per_position: bool = False
    """sampled_softmax: every position draws its own ``num_negatives`` (eSASRec's reference) instead of the batch
    sharing one draw; negatives equal to the position's target are not negatives either way."""
    static_shapes: bool = False
    """Train on batches of one shape (``data.batch_size`` x the full window) with a loss that never waits for the
    device (``loss=ce``, masked): on a GPU the step's forward and backward are compiled and replayed as CUDA graphs
    (``torch.compile(mode="reduce-overhead")``), cutting the launches of a host-bound step; elsewhere the same step
    runs eagerly (tested equal to the default step on the CPU)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            ("hidden_size", self.hidden_size >= 1, "must be >= 1"),
            ("similarity", self.similarity in SIMILARITIES, f"expected one of {', '.join(SIMILARITIES)}"),
            ("temperature", self.temperature > 0.0, "must be > 0"),
            (
                "static_shapes",
                not self.static_shapes or self.loss == "ce",
                f"needs model.loss=ce (its masked loss has one shape whatever the targets; got loss={self.loss})",
            ),
            ("feature_fusion", self.feature_fusion in FUSIONS, f"expected one of {', '.join(FUSIONS)}"),
            ("feature_sides", self.feature_sides in SIDES, f"expected one of {', '.join(SIDES)}"),
            ("feature_id_dropout", 0.0 <= self.feature_id_dropout < 1.0, "must be in [0, 1)"),
            ("item_dropout", 0.0 <= self.item_dropout < 1.0, "must be in [0, 1)"),
            (
                "negatives_per_position",
                not self.negatives_per_position or self.loss == "sampled_softmax",
                f"applies to loss=sampled_softmax (got loss={self.loss})",
            ),
            ("dropout", 0.0 <= self.dropout < 1.0, "must be in [0, 1)"),
            ("loss", self.loss in LOSSES, f"expected one of {', '.join(sorted(LOSSES))}"),
            ("num_negatives", self.num_negatives >= 1, "must be >= 1"),
            (
                "in_batch_negatives",
                self.in_batch_negatives is None or self.in_batch_negatives >= 0,
                "expected null (every target of the batch) or >= 0",
            ),
            (
                "negative_sampling",
                self.negative_sampling in ("uniform", "popularity"),
                "expected uniform or popularity",
            ),
            ("gbce_t", 0.0 <= self.gbce_t <= 1.0, "must be in [0, 1]"),
            ("ce_max_logits", self.ce_max_logits >= 1, "must be >= 1"),
            ("lr", self.lr > 0.0, "must be > 0"),
            ("weight_decay", self.weight_decay >= 0.0, "must be >= 0"),
            (
                "betas",
                len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
                "expected two numbers in [0, 1), e.g. [0.9, 0.98]",
            ),
            ("warmup_steps", self.warmup_steps >= 0, "must be >= 0"),
            ("schedule", self.schedule in ("constant", "cosine", "linear"), "expected constant, cosine or linear"),
        ]
        check_ranges(self, "model", checks)


@dataclass(frozen=True)
class TransformerSettings(SequentialSettings):
    """The transformer encoder of SASRec and BERT4Rec."""

    num_blocks: int = 2
    num_heads: int = 1
    norm_first: bool = True
    """Pre-norm (True) or post-norm (False) transformer blocks."""
    block_layout: str = "standard"
    """``standard`` blocks (pre- or post-norm by ``norm_first``) or ``sasrec_reference``, the pre-norm variant of
    the SASRec reference code: ``Q = LN(x); x = Q + MHA(Q, x, x); x = LN(x); x = x + FFN(x)`` (keys and values
    not normalised, no dropout on the attention output, layer-norm eps 1e-8); needs ``norm_first=true``; or
    ``bert_reference``, a HuggingFace ``BertModel`` as the BERT4Rec reference code uses it (item embeddings not
    scaled by sqrt(hidden), a learned token-type vector, layer-norm eps 1e-12, no dropout inside the
    feed-forward); needs ``norm_first=false``."""
    positions: str = "from_end"
    """Position ids of a left-padded input: ``from_end`` (the last column is ``max_len - 1``) or ``from_start``
    (the first real token is 0, as the reference code numbers its right-padded inputs; BERT4Rec's MASK counts)."""
    activation: str = "gelu"
    ff_mult: int = 4
    """Feed-forward width as a multiple of hidden_size."""
    init: str = "normal"
    """Initial weights of every matrix: ``normal`` (N(0, 0.02), as BERT) or ``xavier`` (Xavier-normal, as the
    SASRec and RecTools reference code); padding rows start at zero either way."""
    scale_embeddings: bool = True
    """Multiply the input item vectors by sqrt(hidden_size) (the Transformer's and SASRec's); RecTools does not,
    and ``bert_reference`` never does."""
    final_norm: bool = True
    """Pre-norm layouts: a layer norm over the last block's output (RecTools' eSASRec stack has none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            ("num_blocks", self.num_blocks >= 1, "must be >= 1"),
            (
                "num_heads",
                self.num_heads >= 1 and self.hidden_size % self.num_heads == 0,
                f"must be >= 1 and divide model.hidden_size={self.hidden_size}",
            ),
            ("activation", self.activation in ("gelu", "relu"), "expected gelu or relu"),
            ("ff_mult", self.ff_mult >= 1, "must be >= 1"),
            ("init", self.init in INITS, f"expected one of {', '.join(INITS)}"),
            ("positions", self.positions in POSITIONS, f"expected one of {', '.join(POSITIONS)}"),
            ("block_layout", self.block_layout in BLOCK_LAYOUTS, f"expected one of {', '.join(BLOCK_LAYOUTS)}"),
            (
                "block_layout",
                self.norm_first or self.block_layout != "sasrec_reference",
                "sasrec_reference is a pre-norm layout; it needs model.norm_first=true",
            ),
            (
                "block_layout",
                self.norm_first or self.block_layout not in ("ligr", "hstu"),
                f"{self.block_layout} is a pre-norm layout; it needs model.norm_first=true",
            ),
            (
                "block_layout",
                not self.norm_first or self.block_layout != "bert_reference",
                "bert_reference is a post-norm layout; it needs model.norm_first=false",
            ),
        ]
        check_ranges(self, "model", checks)


@dataclass(frozen=True)
class SASRecSettings(TransformerSettings):
    """SASRec's defaults: the paper's ML-1M block (hidden 50, one head, a ReLU feed-forward as wide as the model)."""

    hidden_size: int = 50
    activation: str = "relu"
    ff_mult: int = 1


@dataclass(frozen=True)
class ESASRecSettings(SASRecSettings):
    """eSASRec (Tikhonovich et al., RecSys 2025): SASRec's shifted-sequence objective, LiGR layers and a sampled
    softmax over 256 uniform negatives; the sizes of its ML-1M recipe (transformer_benchmark
    configs/paper/loo/ml_1m.yaml: hidden 64, 2 blocks, 1 head, dropout 0.1, max_len 200), RecTools' Adam."""

    hidden_size: int = 64
    activation: str = "gelu"
    ff_mult: int = 4
    block_layout: str = "ligr"
    loss: str = "sampled_softmax"
    num_negatives: int = 256
    dropout: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass(frozen=True)
class HSTUSettings(SASRecSettings):
    """HSTU (Zhai et al., ICML 2024) as its ML-1M config (generative-recommenders
    configs/ml-1m/hstu-sampled-softmax-n128-final.gin): hidden 50, 2 blocks, 1 head, dropout 0.2, max_len 200,
    a sampled softmax over 128 negatives, Adam lr 1e-3, states and item vectors L2-normalised and their cosine divided
    by a temperature of 0.05. As the reference code builds it (research/, 2e81fab): the last block's output goes to
    that L2 norm directly, with no layer norm between, and positions are numbered from the start of the window.
    How it draws negatives (each position its own, history allowed) is the preset's (conf/experiment/hstu_ml-1m.yaml),
    as those settings apply to the sampled softmax only."""

    block_layout: str = "hstu"
    final_norm: bool = False
    positions: str = "from_start"
    loss: str = "sampled_softmax"
    num_negatives: int = 128
    similarity: str = "cosine"
    temperature: float = 0.05
    time_buckets: int = 0
    """Buckets of the time between two items, each with a learned attention bias (0: none; the reference: 128)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, "model", [("time_buckets", self.time_buckets >= 0, "must be >= 0 (0: no time bias)")])


@dataclass(frozen=True)
class ClozeSettings(TransformerSettings):
    """BERT4Rec: the paper's block (2 heads, GELU, feed-forward x4, dropout 0.1), AdamW with warm-up and linear
    decay, and the masking rate of its training samples."""

    num_heads: int = 2
    dropout: float = 0.1
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 100
    schedule: str = "linear"
    mask_prob: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, "model", [("mask_prob", 0.0 < self.mask_prob <= 1.0, "must be in (0, 1]")])


@dataclass(frozen=True)
class GRUSettings(SequentialSettings):
    """GRU4Rec: a stack of GRU layers (``dropout`` applies to the item embeddings and between layers)."""

    num_layers: int = 1
    dropout: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, "model", [("num_layers", self.num_layers >= 1, "must be >= 1")])
