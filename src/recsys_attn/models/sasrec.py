"""SASRec (Kang & McAuley 2018): causal self-attention, next-item prediction at every position."""

from __future__ import annotations

from typing import ClassVar

from recsys_attn.models.settings import SASRecSettings
from recsys_attn.models.transformer import TransformerRec


class SASRec(TransformerRec):
    """Causal transformer; trained on shifted next-item targets (the default ``sample_spec``)."""

    settings_class: ClassVar[type[SASRecSettings]] = SASRecSettings
    settings: SASRecSettings
    causal: ClassVar[bool] = True
