"""BERT4Rec (Sun et al. 2019): bidirectional attention, Cloze objective on masked items."""

from __future__ import annotations

from typing import ClassVar

from recsys_attn.models.settings import ClozeSettings
from recsys_attn.models.transformer import TransformerRec


class BERT4Rec(TransformerRec):
    """Bidirectional transformer over sequences with [MASK] (id ``n_items + 1``) tokens.

    Training predicts the masked items (``data.sample_kind=cloze``); at inference the datamodule
    appends a MASK after the history and the model scores that position.
    """

    settings_class: ClassVar[type[ClozeSettings]] = ClozeSettings
    causal: ClassVar[bool] = False
    sample_kind: ClassVar[str] = "cloze"
    extra_tokens: ClassVar[int] = 1
