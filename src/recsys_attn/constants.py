"""Token ids shared by every part of the package, defined once."""

PAD: int = 0
"""Padding id; real items are remapped to ``1..n_items``."""


def mask_id(n_items: int) -> int:
    """Id of BERT4Rec's [MASK] token: one past the last real item."""
    return n_items + 1
