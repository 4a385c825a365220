"""SASRec (Kang & McAuley 2018): causal self-attention, next-item prediction at every position."""

from __future__ import annotations

from typing import ClassVar

from recsys_attn.models.transformer import TransformerRec


class SASRec(TransformerRec):
    """Causal transformer; trained on shifted next-item targets (the default ``sample_spec``)."""

    causal: ClassVar[bool] = True
