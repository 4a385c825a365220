"""Transformer sequence encoder shared by SASRec and BERT4Rec (a plain nn.Module, no Lightning)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from recsys_attn.constants import PAD
from recsys_attn.models.attention import Rotary, SelfAttention
from recsys_attn.models.hstu_block import HSTUBlock, time_bucket_ids
from recsys_attn.models.item_embedding import FeatureEmbedding, ItemEmbedding
from recsys_attn.models.ligr import LiGRBlock
from recsys_attn.models.rotary import rotary_tables

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}
POSITIONS = ("from_end", "from_start", "rotary")
"""How positions enter (``model.positions``): a learned embedding per position id numbered ``from_end`` or
``from_start`` (see ``SequenceEncoder.position_ids``), or ``rotary``: queries and keys rotated by position
(``models.rotary``), no position embedding."""
BLOCK_LAYOUTS = ("standard", "sasrec_reference", "bert_reference", "ligr", "hstu")
"""Wirings of the encoder (``model.block_layout``): ``Block``, ``ReferenceBlock``, a HuggingFace BERT's,
``LiGRBlock`` (eSASRec's gated pre-norm layers) or ``HSTUBlock`` (see ``SequenceEncoder``)."""
INITS = ("normal", "xavier")
"""Initial weights (``model.init``): N(0, 0.02) as BERT, or Xavier-normal as the SASRec and RecTools code."""
PRE_NORM_LAYOUTS = ("sasrec_reference", "ligr", "hstu")
"""Layouts that normalise each branch's input (and the encoder's output): they need ``norm_first``."""
REFERENCE_EPS = 1e-8
"""The layer-norm epsilon of the SASRec reference code (pmixer's SASRec.pytorch, Klenitskiy & Vasilev)."""
BERT_EPS = 1e-12
"""The layer-norm epsilon of a HuggingFace ``BertModel`` (the BERT4Rec reference code, Klenitskiy & Vasilev)."""


class Block(nn.Module):
    """Attention + feed-forward, each with residual, dropout and layer norm (pre- or post-norm).

    ``inner_dropout`` drops out the feed-forward's hidden activations too (a HuggingFace ``BertLayer`` does not);
    ``eps`` is the layer norms' epsilon.
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        dropout: float,
        norm_first: bool,
        activation: str,
        ff_mult: int,
        inner_dropout: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = SelfAttention(hidden, heads, dropout)
        self.ff = nn.Sequential(
            nn.Linear(hidden, ff_mult * hidden),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout) if inner_dropout else nn.Identity(),  # Identity keeps the parameter names
            nn.Linear(ff_mult * hidden, hidden),
        )
        self.norm1, self.norm2 = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, rotary: Rotary | None = None) -> Tensor:
        if self.norm_first:
            x = x + self.drop(self.attn(self.norm1(x), mask, rotary=rotary))  # [B, L, D]
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, mask, rotary=rotary)))
        return self.norm2(x + self.drop(self.ff(x)))


class ReferenceBlock(nn.Module):
    """The block of the SASRec reference code (pmixer's SASRec.pytorch, as Klenitskiy & Vasilev's models.py).

    ``Q = LN(x); x = Q + MHA(Q, x, x); x = LN(x); x = x + FFN(x)``: the queries are normalised, the keys and
    values are not, and the attention residual starts from the normalised ``Q``. Dropout acts on the attention
    weights only (none on the attention output) and in the feed-forward before its activation and after it.
    The parameter names and shapes are ``Block``'s, so one state dict loads into either.
    """

    def __init__(self, hidden: int, heads: int, dropout: float, activation: str, ff_mult: int) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, heads, dropout)
        self.ff = nn.Sequential(
            nn.Linear(hidden, ff_mult * hidden),
            nn.Dropout(dropout),  # the reference: conv1 -> dropout1 -> ReLU -> conv2 -> dropout2
            ACTIVATIONS[activation](),
            nn.Linear(ff_mult * hidden, hidden),
        )
        self.norm1 = nn.LayerNorm(hidden, eps=REFERENCE_EPS)
        self.norm2 = nn.LayerNorm(hidden, eps=REFERENCE_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, rotary: Rotary | None = None) -> Tensor:
        q = self.norm1(x)  # [B, L, D]
        x = q + self.attn(q, mask, kv=x, rotary=rotary)  # [B, L, D] keys and values from the un-normalised stream
        x = self.norm2(x)  # [B, L, D]
        return x + self.drop(self.ff(x))  # [B, L, D] the residual from the normalised stream


class SequenceEncoder(nn.Module):
    """Item + position embeddings, N transformer blocks; scores = dot product with the item table.

    Inputs are left-padded. Both ways of numbering positions (``position_ids``) give the same outputs at the real
    positions of a sequence whatever its padded width; so do rotary positions (``models.rotary``: no position
    embedding, queries and keys rotated by their column, which only relative positions survive). ``block_layout``
    picks ``Block`` (pre- or post-norm by ``norm_first``), ``ReferenceBlock`` (a pre-norm variant: needs
    ``norm_first``) or ``bert_reference``, a HuggingFace ``BertModel`` as the BERT4Rec reference code uses it (needs
    post-norm): item embeddings not scaled by sqrt(hidden), a learned token-type vector added to every token, layer
    norms with eps 1e-12, and no dropout inside the feed-forward; or ``ligr``, eSASRec's ``LiGRBlock`` (pre-norm,
    gated residual branches, a SwiGLU feed-forward: ``activation`` does not apply); or ``hstu``, ``HSTUBlock``
    (pointwise SiLU attention gated by U, a relative position bias, no feed-forward: ``activation`` and ``ff_mult``
    do not apply).
    """

    type_emb: nn.Parameter | None
    pos_emb: nn.Embedding | None

    def __init__(
        self,
        n_tokens: int,
        hidden: int,
        num_blocks: int,
        num_heads: int,
        dropout: float,
        max_len: int,
        causal: bool,
        norm_first: bool = True,
        activation: str = "gelu",
        ff_mult: int = 4,
        positions: str = "from_end",
        block_layout: str = "standard",
        features: FeatureEmbedding | None = None,
        feature_sides: str = "both",
        time_buckets: int = 0,
        init: str = "normal",
        scale_embeddings: bool = True,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"model.init: expected one of {', '.join(INITS)} (got {init!r})")
        if positions not in POSITIONS:
            raise ValueError(f"model.positions: expected one of {', '.join(POSITIONS)} (got {positions!r})")
        if block_layout not in BLOCK_LAYOUTS:
            raise ValueError(f"model.block_layout: expected one of {', '.join(BLOCK_LAYOUTS)} (got {block_layout!r})")
        reference, bert = block_layout == "sasrec_reference", block_layout == "bert_reference"
        ligr, hstu = block_layout == "ligr", block_layout == "hstu"
        if block_layout in PRE_NORM_LAYOUTS and not norm_first:
            raise ValueError(f"model.block_layout: {block_layout} is a pre-norm layout; it needs model.norm_first=true")
        if bert and norm_first:
            raise ValueError(
                "model.block_layout: bert_reference is a post-norm layout; it needs model.norm_first=false"
            )
        if positions == "rotary" and hstu:
            raise ValueError("model.positions=rotary: the hstu layout has its own relative position bias; use from_end")
        if positions == "rotary" and (hidden // num_heads) % 2:
            raise ValueError(
                f"model.positions=rotary rotates pairs of a head's dimensions: model.hidden_size / model.num_heads "
                f"= {hidden // num_heads} must be even"
            )
        if time_buckets and not hstu:
            raise ValueError(f"model.time_buckets: only block_layout=hstu reads timestamps (got {block_layout!r})")
        self.causal, self.max_len, self.norm_first, self.time_buckets = causal, max_len, norm_first, time_buckets
        self.positions, self.block_layout = positions, block_layout
        self.item_emb = ItemEmbedding(n_tokens, hidden)
        # rotary: positions rotate queries and keys in the attention instead
        self.pos_emb = None if positions == "rotary" else nn.Embedding(max_len, hidden)
        self.head_dim = hidden // num_heads
        self.emb_drop = nn.Dropout(dropout)
        eps = REFERENCE_EPS if reference else BERT_EPS if bert else 1e-5  # every layer norm's
        self.blocks = nn.ModuleList(
            ReferenceBlock(hidden, num_heads, dropout, activation, ff_mult)
            if reference
            else LiGRBlock(hidden, num_heads, dropout, ff_mult)
            if ligr
            else HSTUBlock(hidden, num_heads, dropout, max_len, time_buckets)
            if hstu
            else Block(hidden, num_heads, dropout, norm_first, activation, ff_mult, inner_dropout=not bert, eps=eps)
            for _ in range(num_blocks)
        )
        self.final_norm = nn.LayerNorm(hidden, eps=eps) if norm_first and final_norm else nn.Identity()
        self.emb_norm = nn.Identity() if norm_first else nn.LayerNorm(hidden, eps=eps)
        self.scale = math.sqrt(hidden) if scale_embeddings and not bert else 1.0
        # a BertModel's token-type embedding: every token has type 0, so one learned vector added to each
        self.register_parameter("type_emb", nn.Parameter(torch.empty(hidden)) if bert else None)
        self.apply(self._init)
        if init == "xavier":
            xavier_normal(self)
        if self.type_emb is not None:
            nn.init.normal_(self.type_emb, std=0.02)
        self.item_emb.attach(features, feature_sides)  # after the init above: the features initialise their own

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()

    def attention_mask(self, items: Tensor) -> Tensor:
        """Boolean ``[B, 1, L, L]``: True where a query may attend to a key."""
        n = items.shape[1]
        keys = (items != PAD)[:, None, None, :]  # [B, 1, 1, L]
        eye = torch.eye(n, dtype=torch.bool, device=items.device)  # [L, L] padding rows see themselves
        mask = keys | eye
        if self.causal:
            mask = mask & torch.ones(n, n, dtype=torch.bool, device=items.device).tril()
        return mask

    def position_ids(self, items: Tensor) -> Tensor:
        """Position ids of left-padded ``items`` ``[B, L]``, broadcastable to ``[B, L]``.

        ``from_end``: by column from the right, the last column is ``max_len - 1``. ``from_start``: by real
        token from the left, the first non-PAD token of the row is 0 (as the reference code's right-padded
        ``arange``); a BERT4Rec MASK is a token, so an appended MASK is the position after the history.
        Padding gets 0 (it is masked out anyway).
        """
        if self.positions == "from_start":
            return ((items != PAD).cumsum(1) - 1).clamp(min=0)  # [B, L]
        n = items.shape[1]
        return torch.arange(self.max_len - n, self.max_len, device=items.device)  # [L]

    def forward(self, items: Tensor, *, times: Tensor | None = None) -> Tensor:
        """Hidden states ``[B, L, D]`` for left-padded item ids ``[B, L]``; zero at padding.

        ``times`` ``[B, L]`` (seconds since the epoch of each input) feed the HSTU blocks' time bias; an encoder
        built with ``time_buckets`` needs them.
        """
        n = items.shape[1]
        if n > self.max_len:
            raise ValueError(f"input length {n} exceeds model.max_len={self.max_len}")
        bucket_ids = None
        if self.time_buckets:
            if times is None:
                raise ValueError(f"model.time_buckets={self.time_buckets}: the encoder needs the inputs' times [B, L]")
            bucket_ids = time_bucket_ids(times, self.time_buckets)  # [B, L, L]
        keep = (items != PAD).unsqueeze(-1)  # [B, L, 1]
        x = self.item_emb(items) * self.scale  # [B, L, D]
        if self.pos_emb is not None:
            x = x + self.pos_emb(self.position_ids(items))  # [B, L, D]
        if self.type_emb is not None:
            x = x + self.type_emb  # [B, L, D]
        x = self.emb_drop(self.emb_norm(x)) * keep
        mask = self.attention_mask(items)  # [B, 1, L, L]
        extra: tuple[object, ...] = ()  # what the blocks read besides states and mask
        if bucket_ids is not None:
            extra = (bucket_ids,)
        elif self.pos_emb is None:
            extra = (rotary_tables(n, self.head_dim, items.device),)  # ([L, Dh/2], [L, Dh/2])
        for block in self.blocks:
            x = block(x, mask, *extra) * keep  # [B, L, D]
        return self.final_norm(x) * keep

    def item_weights(self, n_items: int) -> Tensor:
        """Output table ``[n_items + 1, D]`` (row 0 = padding): the tied input embeddings (with features, fused)."""
        return self.item_emb.output_table(n_items)


def xavier_normal(module: nn.Module) -> None:
    """Every matrix of ``module`` Xavier-normal (the reference code's init: ``xavier_normal_`` on each parameter of
    two or more dimensions), then the padding rows of its embeddings back to zero.

    A layer whose ``row_blocks`` says its weight stacks several matrices (SwiGLU's W1 and W3 in one product) has
    each block initialised by its own fans, as the reference's separate layers are.
    """
    with torch.no_grad():
        for m in module.modules():
            blocks = int(getattr(m, "row_blocks", 1))
            for param in m.parameters(recurse=False):
                if param.dim() >= 2:
                    for block in param.chunk(blocks, dim=0):  # views: initialised in place
                        nn.init.xavier_normal_(block)
        for m in module.modules():
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
