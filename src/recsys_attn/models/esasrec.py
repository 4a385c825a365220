"""eSASRec (Tikhonovich et al., RecSys 2025): SASRec with LiGR layers, trained with a sampled softmax."""

from __future__ import annotations

from typing import ClassVar

from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.settings import ESASRecSettings


class ESASRec(SASRec):
    """SASRec's causal encoder and next-item samples; ``ESASRecSettings`` chooses the LiGR block and the loss."""

    settings_class: ClassVar[type[ESASRecSettings]] = ESASRecSettings
    settings: ESASRecSettings
