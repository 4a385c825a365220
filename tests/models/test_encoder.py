"""SequenceEncoder: causality, padding invariance, BERT4Rec masking, norm placement, max length."""

from __future__ import annotations

import pytest
import torch

from recsys_attn.constants import PAD, mask_id
from recsys_attn.data.batches import cloze_batch
from recsys_attn.models.encoder import Block, SequenceEncoder

N_ITEMS = 12
MASK = mask_id(N_ITEMS)  # 13
MAX_LEN = 10
HIDDEN = 16


def make_encoder(causal: bool, norm_first: bool = True, seed: int = 0) -> SequenceEncoder:
    """A small encoder in eval mode whose every parameter (biases, norms included) is random.

    The default init (std 0.02, zero biases, unit norms) hides leaks that random weights expose:
    with zero biases a zeroed padding key still enters the softmax denominator, but only barely.
    """
    torch.manual_seed(seed)
    enc = SequenceEncoder(
        n_tokens=N_ITEMS + 2,  # items, PAD and MASK
        hidden=HIDDEN,
        num_blocks=2,
        num_heads=2,
        dropout=0.3,  # eval mode must switch it off
        max_len=MAX_LEN,
        causal=causal,
        norm_first=norm_first,
    )
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        enc.item_emb.weight[PAD].zero_()
    return enc.eval()


SEQ = torch.tensor([[4, 7, 1, 9, 3, 11]])  # [1, 6] no padding


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("t", [0, 2, 4])
def test_causal_outputs_ignore_later_positions(norm_first: bool, t: int) -> None:
    enc = make_encoder(causal=True, norm_first=norm_first)
    changed = SEQ.clone()
    changed[0, t + 1] = 2  # a different item at position t + 1 only
    with torch.no_grad():
        a, b = enc(SEQ), enc(changed)  # [1, 6, D]
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    # Positions from t + 1 on do see the change (the comparison above is not vacuous).
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().amax(-1).min() > 1e-3


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("t", [0, 2, 4])
def test_bidirectional_outputs_see_later_positions(norm_first: bool, t: int) -> None:
    enc = make_encoder(causal=False, norm_first=norm_first)
    changed = SEQ.clone()
    changed[0, t + 1] = 2
    with torch.no_grad():
        a, b = enc(SEQ), enc(changed)
    # Every earlier position changes: the bidirectional encoder attends to the future.
    assert (a[:, : t + 1] - b[:, : t + 1]).abs().amax(-1).min() > 1e-3


def test_attention_mask_causal_and_padding() -> None:
    items = torch.tensor([[PAD, PAD, 5, 6]])  # [1, 4]
    expected_causal = torch.tensor(
        [
            [True, False, False, False],  # a padding query sees only itself (no empty softmax row)
            [False, True, False, False],
            [False, False, True, False],
            [False, False, True, True],
        ]
    )
    expected_bidir = torch.tensor(
        [
            [True, False, True, True],
            [False, True, True, True],
            [False, False, True, True],
            [False, False, True, True],
        ]
    )
    assert torch.equal(make_encoder(causal=True).attention_mask(items)[0, 0], expected_causal)
    assert torch.equal(make_encoder(causal=False).attention_mask(items)[0, 0], expected_bidir)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_padding_invariance(causal: bool, norm_first: bool) -> None:
    enc = make_encoder(causal=causal, norm_first=norm_first)
    seq = torch.tensor([8, 2, 12, 5])  # 4 real items
    narrow = torch.cat([torch.full((1,), PAD), seq])[None]  # [1, 5]
    wide = torch.cat([torch.full((5,), PAD), seq])[None]  # [1, 9]
    with torch.no_grad():
        out5, out9 = enc(narrow), enc(wide)  # [1, 5, D], [1, 9, D]
    torch.testing.assert_close(out5[:, -4:], out9[:, -4:], rtol=0, atol=1e-5)
    assert torch.equal(out5[:, :1], torch.zeros(1, 1, HIDDEN))
    assert torch.equal(out9[:, :5], torch.zeros(1, 5, HIDDEN))
    assert out9[:, -4:].abs().amax(-1).min() > 0.1  # real positions are not zeroed


@pytest.mark.parametrize("causal", [True, False])
def test_padding_invariance_within_a_batch(causal: bool) -> None:
    """A row's outputs do not depend on the other rows, however padded they are."""
    enc = make_encoder(causal=causal)
    batch = torch.tensor([[PAD, PAD, PAD, 3, 4], [6, 7, 8, 9, 10], [PAD] * 5])  # [3, 5]
    with torch.no_grad():
        out = enc(batch)  # [3, 5, D]
        alone = enc(torch.tensor([[3, 4]]))  # [1, 2, D]
    torch.testing.assert_close(out[0, -2:], alone[0], rtol=0, atol=1e-5)
    assert torch.equal(out[2], torch.zeros(5, HIDDEN))  # an all-padding row: zeros, no NaN
    assert torch.isfinite(out).all()


def test_masked_item_does_not_reach_the_mask_position() -> None:
    """BERT4Rec: the output at a masked position is independent of the item that was masked.

    The two windows differ only in their last item; the cloze collate masks that item in both, so
    the encoder sees identical inputs. Without the mask, the same position does depend on the item.
    """
    enc = make_encoder(causal=False)
    rows = torch.tensor([[4, 7, 1, 9, 3], [4, 7, 1, 9, 11]])  # [2, 5], differ at p = 4
    batch = cloze_batch(rows, torch.tensor([True, True]), mask_prob=0.0, mask_token=MASK)
    assert torch.equal(batch.input, torch.tensor([[4, 7, 1, 9, MASK]] * 2))
    assert torch.equal(batch.target, torch.tensor([[0, 0, 0, 0, 3], [0, 0, 0, 0, 11]]))
    with torch.no_grad():
        masked = enc(batch.input)[:, -1]  # [2, D]
        unmasked = enc(rows)[:, -1]  # [2, D]
    torch.testing.assert_close(masked[0], masked[1], rtol=0, atol=1e-6)
    assert (unmasked[0] - unmasked[1]).abs().max() > 1e-3


def test_mask_position_depends_on_its_context() -> None:
    """...while the output at MASK does depend on the items on both sides of it."""
    enc = make_encoder(causal=False)
    base = torch.tensor([[4, 7, MASK, 9, 3]])
    left, right = base.clone(), base.clone()
    left[0, 1], right[0, 3] = 2, 2
    with torch.no_grad():
        out, out_l, out_r = enc(base)[0, 2], enc(left)[0, 2], enc(right)[0, 2]
    assert (out - out_l).abs().max() > 1e-3
    assert (out - out_r).abs().max() > 1e-3


def test_pre_norm_and_post_norm_both_run_and_differ() -> None:
    pre, post = (
        make_encoder(causal=True, norm_first=True),
        make_encoder(causal=True, norm_first=False),
    )
    assert isinstance(pre.emb_norm, torch.nn.Identity)
    assert isinstance(pre.final_norm, torch.nn.LayerNorm)
    assert isinstance(post.emb_norm, torch.nn.LayerNorm)
    assert isinstance(post.final_norm, torch.nn.Identity)
    # Same embeddings and blocks: only the position of the norms differs.
    shared = {k: v for k, v in pre.state_dict().items() if not k.startswith(("final_norm", "emb_norm"))}
    post.load_state_dict(shared, strict=False)
    items = torch.tensor([[PAD, 3, 4, 5], [6, 7, 8, 9]])
    with torch.no_grad():
        a, b = pre(items), post(items)  # [2, 4, D]
    for out in (a, b):
        assert out.shape == (2, 4, HIDDEN)
        assert torch.isfinite(out).all()
        assert torch.equal(out[0, 0], torch.zeros(HIDDEN))
    assert (a[:, 1:] - b[:, 1:]).abs().max() > 1e-3


@pytest.mark.parametrize("norm_first", [True, False])
def test_block_norm_placement(norm_first: bool) -> None:
    """Post-norm blocks end in a layer norm (unit gain, zero bias at init); pre-norm blocks return
    the un-normalised residual stream."""
    torch.manual_seed(0)
    block = Block(HIDDEN, 2, 0.0, norm_first, "gelu", 4).eval()
    x = torch.randn(2, 5, HIDDEN) * 3 + 1  # [B, L, D], far from normalised
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    with torch.no_grad():
        y = block(x, mask)  # [2, 5, D]
    mean, var = y.mean(-1), y.var(-1, unbiased=False)  # [2, 5]
    normalised = bool(torch.allclose(mean, torch.zeros(2, 5), atol=1e-5)) and bool(
        torch.allclose(var, torch.ones(2, 5), atol=1e-3)
    )
    assert normalised != norm_first


def test_post_norm_encoder_output_is_layer_normalised() -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(N_ITEMS + 2, HIDDEN, 2, 2, 0.0, MAX_LEN, causal=True, norm_first=False)
    with torch.no_grad():
        out = enc.eval()(torch.tensor([[PAD, 3, 4, 5]]))[0, 1:]  # [3, D] real positions
    torch.testing.assert_close(out.mean(-1), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(3), rtol=0, atol=1e-3)


def test_training_mode_applies_dropout() -> None:
    enc = make_encoder(causal=True).train()
    torch.manual_seed(1)
    a = enc(SEQ)
    b = enc(SEQ)
    assert not torch.equal(a, b)
    enc.eval()
    assert torch.equal(enc(SEQ), enc(SEQ))


def test_too_long_input_raises() -> None:
    enc = make_encoder(causal=True)
    enc(torch.ones(1, MAX_LEN, dtype=torch.long))  # exactly max_len is fine
    with pytest.raises(ValueError, match=r"input length 11 exceeds model\.max_len=10"):
        enc(torch.ones(1, MAX_LEN + 1, dtype=torch.long))


def test_item_weights_are_the_tied_input_embeddings() -> None:
    enc = make_encoder(causal=False)
    w = enc.item_weights(N_ITEMS)
    assert w.shape == (N_ITEMS + 1, HIDDEN)  # MASK row excluded
    assert w.data_ptr() == enc.item_emb.weight.data_ptr()
    assert torch.equal(w, enc.item_emb.weight[: N_ITEMS + 1])
