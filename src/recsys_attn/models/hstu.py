"""HSTU (Zhai et al., ICML 2024): SASRec's next-item objective over HSTU blocks (``models.hstu_block``)."""

from __future__ import annotations

from typing import ClassVar

from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.settings import HSTUSettings


class HSTU(SASRec):
    """A causal encoder of HSTU blocks under the shared loop; ``HSTUSettings`` chooses the block and the loss."""

    settings_class: ClassVar[type[HSTUSettings]] = HSTUSettings
    settings: HSTUSettings
