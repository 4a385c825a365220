"""Transformer recommenders: a transformer encoder in the shared loop; SASRec and BERT4Rec set its direction."""

from __future__ import annotations

from typing import Any, ClassVar

from recsys_attn.models.encoder import SequenceEncoder
from recsys_attn.models.sequential import SequentialRec
from recsys_attn.models.settings import TransformerSettings


class TransformerRec(SequentialRec):
    """A ``SequenceEncoder`` (item + position embeddings, transformer blocks) under the shared training loop."""

    settings_class: ClassVar[type[TransformerSettings]] = TransformerSettings
    settings: TransformerSettings
    causal: ClassVar[bool] = True
    """Causal (SASRec) or bidirectional (BERT4Rec) attention."""

    def build_encoder(self, n_tokens: int) -> SequenceEncoder:
        return SequenceEncoder(**self.encoder_options(n_tokens))

    def encoder_options(self, n_tokens: int) -> dict[str, Any]:
        """``SequenceEncoder``'s arguments from the settings (a model adds the options of its own settings)."""
        s = self.settings
        return {
            "n_tokens": n_tokens,
            "hidden": s.hidden_size,
            "num_blocks": s.num_blocks,
            "num_heads": s.num_heads,
            "dropout": s.dropout,
            "max_len": s.max_len,
            "causal": self.causal,
            "norm_first": s.norm_first,
            "activation": s.activation,
            "ff_mult": s.ff_mult,
            "positions": s.positions,
            "block_layout": s.block_layout,
            "features": self.feature_layers(n_tokens),
            "feature_sides": s.feature_sides,
            "init": s.init,
            "scale_embeddings": s.scale_embeddings,
            "final_norm": s.final_norm,
        }
