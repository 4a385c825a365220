"""HSTU (Zhai et al., ICML 2024): SASRec's next-item objective over HSTU blocks (``models.hstu_block``)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from recsys_attn.data.samples import SampleSpec
from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.settings import HSTUSettings


class HSTU(SASRec):
    """A causal encoder of HSTU blocks under the shared loop; ``HSTUSettings`` chooses the block and the loss.

    With ``model.time_buckets`` > 0 the blocks add a learned bias per bucket of the time between two items, and the
    model reads each input's timestamp (its samples carry them: the data must have timestamps).
    """

    settings_class: ClassVar[type[HSTUSettings]] = HSTUSettings
    settings: HSTUSettings

    @property
    def sample_spec(self) -> SampleSpec:
        return dataclasses.replace(super().sample_spec, times=self.settings.time_buckets > 0)

    def encoder_options(self, n_tokens: int) -> dict[str, Any]:
        return {**super().encoder_options(n_tokens), "time_buckets": self.settings.time_buckets}
