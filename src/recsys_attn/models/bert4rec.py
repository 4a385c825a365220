"""BERT4Rec (Sun et al. 2019): bidirectional attention, Cloze objective on masked items."""

from __future__ import annotations

from typing import ClassVar

from recsys_attn.data.samples import SampleSpec
from recsys_attn.models.settings import ClozeSettings
from recsys_attn.models.transformer import TransformerRec


class BERT4Rec(TransformerRec):
    """Bidirectional transformer over sequences with [MASK] (id ``n_items + 1``) tokens.

    Training predicts the masked items (cloze samples at ``model.mask_prob``); at inference the
    datamodule appends a MASK after the history and the model scores that position.
    """

    settings_class: ClassVar[type[ClozeSettings]] = ClozeSettings
    settings: ClozeSettings
    causal: ClassVar[bool] = False

    @property
    def sample_spec(self) -> SampleSpec:
        s = self.settings
        return SampleSpec("cloze", s.max_len, s.mask_prob, static=s.static_shapes)
