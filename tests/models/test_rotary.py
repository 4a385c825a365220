"""Rotary positions: each dimension pair rotated by its angle, attention scores that see relative positions only."""

from __future__ import annotations

import math

import pytest
import torch

from recsys_attn.models.encoder import SequenceEncoder
from recsys_attn.models.rotary import ROTARY_BASE, rotary_tables, rotate
from tests.tolerances import assert_close, tol


def test_each_pair_is_rotated_by_position_times_its_frequency() -> None:
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)  # [B, H, L, Dh]
    cos, sin = rotary_tables(5, 6, torch.device("cpu"))
    got = rotate(x, cos.double(), sin.double())
    for i in range(5):
        for a in range(3):  # pairs (a, a + 3)
            angle = i * ROTARY_BASE ** (-2 * a / 6)
            c, s = math.cos(angle), math.sin(angle)
            x1, x2 = x[..., i, a], x[..., i, a + 3]
            # the tables are float32: the angle (a power and a product) errs relatively by a few roundings, so
            # cos and sin err absolutely by about (1 + angle) roundings, each times |x1| + |x2| in a pair's
            # rotation, which can cancel to near zero (no relative bound on the result)
            atol = tol(torch.float32, 4) * (1 + angle) * float((x1.abs() + x2.abs()).max())
            assert_close(got[..., i, a], c * x1 - s * x2, rtol=tol(torch.float32, 4), atol=atol)
            assert_close(got[..., i, a + 3], s * x1 + c * x2, rtol=tol(torch.float32, 4), atol=atol)


def test_query_key_products_depend_on_the_distance_only() -> None:
    q, k = torch.randn(1, 1, 12, 8, dtype=torch.float64), torch.randn(1, 1, 12, 8, dtype=torch.float64)
    cos, sin = (t.double() for t in rotary_tables(12, 8, torch.device("cpu")))
    scores = rotate(q, cos, sin) @ rotate(k, cos, sin).transpose(-1, -2)  # [1, 1, 12, 12]
    # the same vectors three positions later: every product of a query and a key keeps its value
    q3, k3 = torch.roll(q, 3, dims=2), torch.roll(k, 3, dims=2)
    shifted = rotate(q3, cos, sin) @ rotate(k3, cos, sin).transpose(-1, -2)
    assert_close(shifted[..., 3:, 3:], scores[..., :9, :9], rtol=tol(torch.float32, 16))
    # and a rotation is no identity: products at other distances differ from the unrotated ones
    assert (scores - q @ k.transpose(-1, -2)).abs().amax() > 1e-2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"block_layout": "hstu"}, "hstu layout has its own relative position bias"),
        ({"hidden": 12, "num_heads": 4}, r"model.hidden_size / model.num_heads = 3 must be even"),
    ],
)
def test_rotary_is_refused_where_it_cannot_apply(settings: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"hidden": 16, "num_heads": 2, **settings}
    with pytest.raises(ValueError, match=message):
        SequenceEncoder(
            n_tokens=10,
            num_blocks=1,
            dropout=0.0,
            max_len=8,
            causal=True,
            positions="rotary",
            **args,  # type: ignore[arg-type]
        )


def test_a_rotary_encoder_has_no_position_embedding() -> None:
    enc = SequenceEncoder(n_tokens=10, hidden=16, num_blocks=1, num_heads=2, dropout=0.0, max_len=8, causal=True)
    rot = SequenceEncoder(
        n_tokens=10, hidden=16, num_blocks=1, num_heads=2, dropout=0.0, max_len=8, causal=True, positions="rotary"
    )
    assert enc.pos_emb is not None and rot.pos_emb is None
    assert {n for n, _ in enc.named_parameters()} - {n for n, _ in rot.named_parameters()} == {"pos_emb.weight"}
