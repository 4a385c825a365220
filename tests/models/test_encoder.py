"""SequenceEncoder: causality, padding invariance, BERT4Rec masking, norm placement, positions, block layouts."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from recsys_attn.constants import PAD, mask_id
from recsys_attn.data.batches import cloze_batch
from recsys_attn.models.encoder import Block, ReferenceBlock, SequenceEncoder
from recsys_attn.models.hstu_block import TIME_BUCKET_BASE, HSTUBlock, time_bucket_ids
from recsys_attn.models.ligr import LiGRBlock
from tests.tolerances import assert_close, sum_tol, tol

N_ITEMS = 12
MASK = mask_id(N_ITEMS)  # 13
MAX_LEN = 10
HIDDEN = 16


ARCHS = {
    "pre_norm": {"norm_first": True},
    "post_norm": {"norm_first": False},
    "reference": {"block_layout": "sasrec_reference"},
    "bert": {"norm_first": False, "block_layout": "bert_reference"},
    "ligr": {"block_layout": "ligr"},
    "hstu": {"block_layout": "hstu"},
}
"""The block wirings: ``norm_first`` x ``block_layout`` as the settings allow them."""

ENCODER_OPS = 500
"""Roundings behind one output element of a ``make_encoder`` encoder: per block, layer norms over 16 values,
q/k/v and output products of 16 terms, scores of 8, a softmax and a mix over up to 10 positions, a 16 -> 64 -> 16
feed-forward (~200); two blocks and the embeddings."""


def assert_same_outputs(actual: torch.Tensor, expected: torch.Tensor, what: str = "outputs") -> None:
    """Two encoder outputs equal up to the rounding of a forward pass in their dtype, at their own scale."""
    assert_close(actual, expected, rtol=tol(expected.dtype, ENCODER_OPS), what=what)


def make_encoder(causal: bool, norm_first: bool = True, seed: int = 0, **settings: Any) -> SequenceEncoder:
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
        **settings,  # positions, block_layout, activation, ff_mult
    )
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        enc.item_emb.weight[PAD].zero_()
    return enc.eval()


SEQ = torch.tensor([[4, 7, 1, 9, 3, 11]])  # [1, 6] no padding


POSITIONS = ["from_end", "from_start", "rotary"]


def positioned_encoder(causal: bool, positions: str, arch: str) -> SequenceEncoder:
    if positions == "rotary" and arch == "hstu":
        pytest.skip("hstu has its own relative position bias: rotary is refused (tested below)")
    return make_encoder(causal=causal, positions=positions, **ARCHS[arch])


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("t", [0, 2, 4])
def test_causal_outputs_ignore_later_positions(arch: str, positions: str, t: int) -> None:
    enc = positioned_encoder(True, positions, arch)
    changed = SEQ.clone()
    changed[0, t + 1] = 2  # a different item at position t + 1 only
    with torch.no_grad():
        a, b = enc(SEQ), enc(changed)  # [1, 6, D]
    assert_same_outputs(a[:, : t + 1], b[:, : t + 1])
    # Positions from t + 1 on do see the change (the comparison above is not vacuous).
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().amax(-1).min() > 1e-4  # far above float32 rounding (~1e-6 here)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("t", [0, 2, 4])
def test_bidirectional_outputs_see_later_positions(arch: str, t: int) -> None:
    enc = make_encoder(causal=False, **ARCHS[arch])
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


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("causal", [True, False])
def test_padding_invariance(causal: bool, arch: str, positions: str) -> None:
    enc = positioned_encoder(causal, positions, arch)
    seq = torch.tensor([8, 2, 12, 5])  # 4 real items
    narrow = torch.cat([torch.full((1,), PAD), seq])[None]  # [1, 5]
    wide = torch.cat([torch.full((5,), PAD), seq])[None]  # [1, 9]
    with torch.no_grad():
        out5, out9 = enc(narrow), enc(wide)  # [1, 5, D], [1, 9, D]
    # The same real items get the same position embeddings, exactly, whatever the padding (rotary: none at all,
    # its rotations differ by the padding's shift, which the dot products of queries and keys cancel).
    if enc.pos_emb is not None:
        ids5, ids9 = enc.position_ids(narrow)[..., -4:], enc.position_ids(wide)[..., -4:]
        assert torch.equal(enc.pos_emb(ids5), enc.pos_emb(ids9))
    assert_same_outputs(out5[:, -4:], out9[:, -4:])  # attention over 5 or 9 keys: summed in another order
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
    assert_same_outputs(out[0, -2:], alone[0])
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
    assert_same_outputs(masked[0], masked[1])
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


def layer_norm_misfit(y: torch.Tensor) -> float:
    """How far the rows of ``y`` ``[..., D]`` are from zero mean and unit variance, in units of a layer norm's
    slack: at most 1 for the output of a layer norm with unit gain and zero bias.

    Such a norm leaves each row's mean 0 up to the rounding of its ``D`` terms (``sum_tol`` of their size) and
    its variance at ``v / (v + norm eps)``, under 1 by ``norm eps / v`` (1e-5 / v for torch's default): below
    1e-3 for the input variances of order 1 here, the rounding far below that.
    """
    mean, var = y.mean(-1), y.var(-1, unbiased=False)  # [...]
    mean_slack = sum_tol(y.dtype, y.shape[-1]) * float(y.abs().max())
    return max(float(mean.abs().max()) / mean_slack, float((var - 1).abs().max()) / 1e-3)


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
    misfit = layer_norm_misfit(y)
    assert (misfit <= 1) != norm_first, misfit  # pre-norm: the residual stream of x, of mean ~1 and variance ~9


def test_post_norm_encoder_output_is_layer_normalised() -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(N_ITEMS + 2, HIDDEN, 2, 2, 0.0, MAX_LEN, causal=True, norm_first=False)
    with torch.no_grad():
        out = enc.eval()(torch.tensor([[PAD, 3, 4, 5]]))[0, 1:]  # [3, D] real positions
    assert layer_norm_misfit(out) <= 1


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


# --- positions --------------------------------------------------------------------------------


def test_position_ids_count_real_tokens_from_start_or_columns_from_end() -> None:
    items = torch.tensor([[PAD, PAD, 5, 6, MASK], [1, 2, 3, 4, 5], [PAD] * 5])  # [3, 5] MASK is a token
    start = make_encoder(causal=False, positions="from_start").position_ids(items)  # [3, 5]
    assert torch.equal(start, torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]]))
    end = make_encoder(causal=False, positions="from_end").position_ids(items)  # [5]
    assert torch.equal(end, torch.arange(MAX_LEN - 5, MAX_LEN))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_from_start_outputs_stay_put_when_the_history_grows(arch: str) -> None:
    """The reference's numbering: the first item is position 0 however long the history, so a causal
    encoder's output after item t does not move when items are appended; numbered from the end, every
    earlier item moves one position back and its output changes."""
    history = torch.tensor([[PAD, PAD, PAD, 4, 7, 1, 9, 3]])  # [1, 8] 5 items
    grown = torch.tensor([[PAD, PAD, 4, 7, 1, 9, 3, 11]])  # [1, 8] the same 5 items and one more
    outs = {}
    for positions in ("from_start", "from_end"):
        enc = make_encoder(causal=True, positions=positions, **ARCHS[arch])
        with torch.no_grad():
            outs[positions] = enc(history)[0, 3:], enc(grown)[0, 2:7]  # 2 x [5, D] at the 5 shared items
    assert_same_outputs(*outs["from_start"])
    a, b = outs["from_end"]
    assert (a - b).abs().amax(-1).min() > 1e-3


@pytest.mark.parametrize("causal", [True, False])
def test_from_end_and_from_start_differ_only_when_the_window_is_not_full(causal: bool) -> None:
    start, end = make_encoder(causal, positions="from_start"), make_encoder(causal, positions="from_end")
    assert torch.equal(start.state_dict()["pos_emb.weight"], end.state_dict()["pos_emb.weight"])  # same weights
    short = torch.tensor([[PAD] * (MAX_LEN - 4) + [8, 2, 12, 5]])  # [1, MAX_LEN] 4 real items
    full = torch.randint(1, N_ITEMS + 1, (1, MAX_LEN))  # [1, MAX_LEN] no padding: both number 0..max_len-1
    with torch.no_grad():
        assert (start(short)[0, -4:] - end(short)[0, -4:]).abs().amax(-1).min() > 1e-3
        assert torch.equal(start(full), end(full))


# --- the SASRec reference code's block layout --------------------------------------------------


def reference_forward(enc: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
    """Klenitskiy & Vasilev's ``SASRec.forward`` (models.py:126-160, pmixer's layout) from the formulas, on
    right-padded ``items`` ``[B, L]`` with positions ``0..L-1`` and a causal mask only, as the reference runs it;
    ``enc``'s weights, eval mode."""
    d = enc.item_emb.embedding_dim
    keep = (items != PAD)[..., None]  # [B, L, 1]
    n = items.shape[1]
    x = enc.item_emb.weight[items] * math.sqrt(d) + enc.pos_emb.weight[:n]  # [B, L, D]
    x = x * keep
    future = torch.ones(n, n, dtype=torch.bool).triu(1)  # [L, L] True = may not attend

    def ln(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)  # [B, L, 1]
        return (x - mu) / torch.sqrt(var + 1e-8) * norm.weight + norm.bias  # the reference's eps

    for blk in enc.blocks:
        heads, w, b = blk.attn.heads, blk.attn.qkv.weight, blk.attn.qkv.bias
        q_in = ln(x, blk.norm1)  # [B, L, D] Q = LN_attn(x)
        q, k, v = (
            t.unflatten(-1, (heads, d // heads)).transpose(1, 2)
            for t in (q_in @ w[:d].T + b[:d], x @ w[d : 2 * d].T + b[d : 2 * d], x @ w[2 * d :].T + b[2 * d :])
        )  # 3 x [B, H, L, Dh]: query from Q, key and value from x
        att = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).masked_fill(future, float("-inf"))  # [B, H, L, L]
        y = (att.softmax(-1) @ v).transpose(1, 2).flatten(2)  # [B, L, D]
        x = q_in + (y @ blk.attn.out.weight.T + blk.attn.out.bias)  # x = Q + MHA(Q, x, x)
        x = ln(x, blk.norm2)  # x = LN_ffn(x)
        lin1, lin2 = blk.ff[0], blk.ff[3]
        x = x + F.relu(x @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias  # x = x + FFN(x)
        x = x * keep
    return ln(x, enc.final_norm)  # [B, L, D] the last layer norm


REFERENCE = {"block_layout": "sasrec_reference", "positions": "from_start", "activation": "relu", "ff_mult": 1}
"""The reference's SASRec: its block, its positions, a ReLU feed-forward as wide as the model."""


def assert_same_as_right_padded(
    enc: SequenceEncoder, forward: Callable[[SequenceEncoder, torch.Tensor], torch.Tensor], top: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``enc`` on left-padded rows equals ``forward`` (a reference written out) on the same rows right-padded,
    at every real position; rows of lengths 6, 3, 1 and ``MAX_LEN`` with ids in ``[1, top]``. Returns the
    left-padded input ``[4, L]`` and ``enc``'s output ``[4, L, D]``."""
    lengths = [6, 3, 1, MAX_LEN]
    rows = [torch.randint(1, top + 1, (n,), generator=torch.Generator().manual_seed(n)) for n in lengths]
    right = torch.stack([F.pad(r, (0, MAX_LEN - len(r)), value=PAD) for r in rows])  # [4, L] the reference's padding
    left = torch.stack([F.pad(r, (MAX_LEN - len(r), 0), value=PAD) for r in rows])  # [4, L] ours
    with torch.no_grad():
        ours, theirs = enc(left), forward(enc, right)  # [4, L, D]
    for i, n in enumerate(lengths):
        assert_same_outputs(ours[i, MAX_LEN - n :], theirs[i, :n], what=f"row {i}")
    return left, ours


def test_reference_layout_is_the_reference_forward() -> None:
    enc = make_encoder(causal=True, **REFERENCE).double()  # float64: the two computations agree to rounding
    assert all(isinstance(b, ReferenceBlock) for b in enc.blocks)
    left, ours = assert_same_as_right_padded(enc, reference_forward, top=N_ITEMS)
    # ...and the standard pre-norm block with the same weights is another function.
    pre = make_encoder(causal=True, positions="from_start", activation="relu", ff_mult=1).double()
    pre.load_state_dict(enc.state_dict())  # the same parameter names and shapes
    with torch.no_grad():
        assert (pre(left) - ours)[left != PAD].abs().amax(-1).min() > 1e-3


def bert_reference_forward(enc: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
    """A HuggingFace ``BertModel`` (eval mode) on right-padded ``items`` ``[B, L]``, written out with ``enc``'s
    weights: ``LN(item + position + token type)``, then per layer ``a = LN(x + Attn(x))``,
    ``x = LN(a + W2 gelu(W1 a))`` with padding keys masked out, layer-norm eps 1e-12, no final norm."""
    n, d = items.shape[1], enc.item_emb.embedding_dim
    assert enc.type_emb is not None
    padding = (items == PAD)[:, None, None, :]  # [B, 1, 1, L] True = a padding key

    def ln(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)  # [B, L, 1]
        return (x - mu) / torch.sqrt(var + 1e-12) * norm.weight + norm.bias  # BertModel's eps

    x = ln(enc.item_emb(items) + enc.pos_emb(torch.arange(n)) + enc.type_emb, enc.emb_norm)  # [B, L, D]
    for blk in enc.blocks:
        heads, w, b = blk.attn.heads, blk.attn.qkv.weight, blk.attn.qkv.bias
        q, k, v = (
            (x @ w[i * d : (i + 1) * d].T + b[i * d : (i + 1) * d]).unflatten(-1, (heads, d // heads)).transpose(1, 2)
            for i in range(3)
        )  # 3 x [B, H, L, Dh]
        att = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).masked_fill(padding, float("-inf"))  # [B, H, L, L]
        y = (att.softmax(-1) @ v).transpose(1, 2).flatten(2)  # [B, L, D]
        a = ln(x + y @ blk.attn.out.weight.T + blk.attn.out.bias, blk.norm1)  # BertAttention's output
        lin1, lin2 = blk.ff[0], blk.ff[3]
        x = ln(a + F.gelu(a @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias, blk.norm2)  # BertOutput
    return x  # [B, L, D]


def test_bert_reference_layout_is_a_huggingface_bert_forward() -> None:
    enc = make_encoder(causal=False, norm_first=False, block_layout="bert_reference", positions="from_start")
    enc = enc.double()  # float64: the two computations agree to rounding
    left, ours = assert_same_as_right_padded(enc, bert_reference_forward, top=MASK)
    # ...and the standard post-norm encoder (scaled items, no token type, eps 1e-5) is another function.
    post = make_encoder(causal=False, norm_first=False, positions="from_start").double()
    post.load_state_dict({k: v for k, v in enc.state_dict().items() if k != "type_emb"})
    with torch.no_grad():
        assert (post(left) - ours)[left != PAD].abs().amax(-1).min() > 1e-3


def test_bert_reference_layout_has_no_dropout_inside_the_feed_forward() -> None:
    """Train mode with the attention-weight dropout off: the feed-forward's hidden activations are never
    dropped (the same output on two draws once everything outside the feed-forward's inner layer is fixed)."""
    enc = make_encoder(causal=False, norm_first=False, block_layout="bert_reference")
    std = make_encoder(causal=False, norm_first=False)
    for e in (enc, std):
        e.emb_drop.p = 0.0
        for blk in e.blocks:
            blk.attn.dropout, blk.drop.p = 0.0, 0.0
        e.train()
    with torch.no_grad():
        assert torch.equal(enc(SEQ), enc(SEQ))
        assert not torch.equal(std(SEQ), std(SEQ))  # the standard block drops the inner activations


def test_reference_layout_refuses_post_norm() -> None:
    with pytest.raises(ValueError, match=r"^model\.block_layout: sasrec_reference is a pre-norm layout"):
        make_encoder(causal=True, norm_first=False, block_layout="sasrec_reference")


@pytest.mark.parametrize(("key", "value"), [("positions", "from_left"), ("block_layout", "pmixer")])
def test_unknown_positions_or_layout_fail_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"^model\.{key}: expected one of .* \(got '{value}'\)$"):
        make_encoder(causal=True, **{key: value})


@pytest.mark.parametrize(("arch", "drops_attention_output"), [("reference", False), ("pre_norm", True)])
def test_the_reference_block_drops_out_attention_weights_not_the_attention_output(
    arch: str, drops_attention_output: bool
) -> None:
    """With the attention-weight dropout off and a feed-forward that adds nothing, a train-mode reference block
    is its eval-mode self (nothing else is dropped), while the standard block drops out the attention output."""
    torch.manual_seed(0)
    if arch == "reference":
        block: torch.nn.Module = ReferenceBlock(HIDDEN, 2, 0.5, "relu", 1)
    else:
        block = Block(HIDDEN, 2, 0.5, True, "relu", 1)
    block.attn.dropout = 0.0
    with torch.no_grad():
        block.ff[-1].weight.zero_()
        block.ff[-1].bias.zero_()
    x = torch.randn(2, 5, HIDDEN)  # [B, L, D]
    mask = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]  # [1, 1, L, L]
    with torch.no_grad():
        trained, evaluated = block.train()(x, mask), block.eval()(x, mask)  # [2, 5, D]
    assert torch.equal(trained, evaluated) != drops_attention_output


def ligr_forward(enc: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
    """eSASRec's LiGR layers written out with ``enc``'s weights on unpadded ``items`` ``[B, L]`` (causal):
    ``x = x + sigmoid(G1 x) * MHA(LN(x)); x = x + sigmoid(G2 x) * W2(silu(W1 h) * W3 h)`` with ``h = LN(x)``,
    then the final layer norm (RecTools' ``LiGRLayer`` and SASRec's output norm)."""
    n, d = items.shape[1], enc.item_emb.embedding_dim
    x = enc.item_emb(items) * math.sqrt(d) + enc.pos_emb(torch.arange(enc.max_len - n, enc.max_len))  # [B, L, D]
    later = torch.ones(n, n, dtype=torch.bool).triu(1)  # [L, L] True = a later key
    for blk in enc.blocks:
        heads, w, b = blk.attn.heads, blk.attn.qkv.weight, blk.attn.qkv.bias
        h = F.layer_norm(x, (d,), blk.norm1.weight, blk.norm1.bias)
        q, k, v = (
            (h @ w[i * d : (i + 1) * d].T + b[i * d : (i + 1) * d]).unflatten(-1, (heads, d // heads)).transpose(1, 2)
            for i in range(3)
        )  # 3 x [B, H, L, Dh]
        att = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).masked_fill(later, float("-inf"))  # [B, H, L, L]
        y = (att.softmax(-1) @ v).transpose(1, 2).flatten(2) @ blk.attn.out.weight.T + blk.attn.out.bias  # [B, L, D]
        x = x + torch.sigmoid(x @ blk.gate1.weight.T + blk.gate1.bias) * y
        h = F.layer_norm(x, (d,), blk.norm2.weight, blk.norm2.bias)
        w1, w3 = blk.ff.up.weight.chunk(2)  # [F, D] each
        x = x + torch.sigmoid(x @ blk.gate2.weight.T + blk.gate2.bias) * (
            (F.silu(h @ w1.T) * (h @ w3.T)) @ blk.ff.down.weight.T
        )
    return F.layer_norm(x, (d,), enc.final_norm.weight, enc.final_norm.bias)  # [B, L, D]


def test_ligr_layout_is_the_esasrec_layer_forward() -> None:
    enc = make_encoder(causal=True, block_layout="ligr").double()  # float64: the two computations agree to rounding
    assert all(isinstance(b, LiGRBlock) for b in enc.blocks)
    with torch.no_grad():
        assert_same_outputs(enc(SEQ), ligr_forward(enc, SEQ))
        standard = make_encoder(causal=True).double()(SEQ)
    assert (standard - enc(SEQ)).abs().amax() > 1e-3  # another function than the standard block


def test_a_closed_ligr_gate_leaves_the_stream_unchanged() -> None:
    enc = make_encoder(causal=True, block_layout="ligr").double()
    blk = enc.blocks[0]
    x = torch.randn(2, 5, HIDDEN, dtype=torch.float64)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool).tril()
    with torch.no_grad():
        for gate in (blk.gate1, blk.gate2):
            gate.weight.zero_()
            gate.bias.fill_(-1e4)  # sigmoid = 0: neither branch passes
        assert torch.equal(blk(x, mask), x)


def bucket(dt: float, buckets: int) -> int:
    """The reference's time bucket of ``dt`` seconds, one number at a time."""
    return min(int(math.log(max(abs(dt), 1.0)) / TIME_BUCKET_BASE), buckets)


def hstu_forward(enc: SequenceEncoder, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
    """HSTU layers written out with ``enc``'s weights on unpadded ``items`` ``[B, L]`` (causal), a loop over query
    and key positions: ``A[i, j] = silu(q_i . k_j + b[j - i] + t[bucket(t_i - t_j)]) / max_len`` for ``j <= i``
    (``t`` only with ``times``), then ``x = x + W_o(LN(sum_j A[i, j] v_j) * u_i)``, then the final layer norm."""
    n, d = items.shape[1], enc.item_emb.embedding_dim
    x = enc.item_emb(items) * math.sqrt(d) + enc.pos_emb(torch.arange(enc.max_len - n, enc.max_len))  # [B, L, D]
    for blk in enc.blocks:
        h = F.layer_norm(x, (d,), eps=blk.norm_in.eps)
        u, v, q, k = F.silu(h @ blk.uvqk.weight.T + blk.uvqk.bias).split(d, -1)  # 4 x [B, L, D]
        dh = d // blk.heads
        a = torch.zeros_like(x)  # [B, L, D]
        for i in range(n):
            for j in range(i + 1):
                for head in range(blk.heads):
                    cols = slice(head * dh, (head + 1) * dh)
                    score = (q[:, i, cols] * k[:, j, cols]).sum(-1) + blk.rel_bias[j - i + enc.max_len - 1]  # [B]
                    if times is not None:
                        ids = [bucket(float(row[i] - row[j]), enc.time_buckets) for row in times]  # [B]
                        score = score + blk.time_bias[ids]
                    a[:, i, cols] += (F.silu(score) / enc.max_len)[:, None] * v[:, j, cols]
        gated = F.layer_norm(a, (d,), eps=blk.norm_attn.eps) * u
        x = x + gated @ blk.out.weight.T + blk.out.bias
    return F.layer_norm(x, (d,), enc.final_norm.weight, enc.final_norm.bias)  # [B, L, D]


def test_hstu_layout_is_the_hstu_layer_forward() -> None:
    enc = make_encoder(causal=True, block_layout="hstu").double()
    assert all(isinstance(b, HSTUBlock) for b in enc.blocks)
    with torch.no_grad():
        assert_same_outputs(enc(SEQ), hstu_forward(enc, SEQ))


def test_hstu_drops_out_its_gated_output_only_never_the_attention_weights() -> None:
    """The reference's rel_bias attention has no dropout (its attn_dropout_ratio is never read; the ML-1M config
    leaves it 0): dropout acts on the gated ``[B, L, D]`` output alone."""
    blk = HSTUBlock(hidden=8, heads=2, dropout=0.5, max_len=6).train()
    shapes: list[tuple[int, ...]] = []
    blk.drop.register_forward_hook(lambda _m, args, _out: shapes.append(tuple(args[0].shape)))
    x = torch.randn(3, 6, 8)  # [B, L, D]
    mask = torch.ones(3, 1, 6, 6, dtype=torch.bool).tril()  # [B, 1, L, L]
    blk(x, mask)
    assert shapes == [(3, 6, 8)]


def test_hstu_block_norms_and_biases_start_as_the_references() -> None:
    """The reference's layer norms carry no weights (eps 1e-6); its position and time biases start at N(0, 0.02)."""
    torch.manual_seed(0)
    blk = HSTUBlock(hidden=50, heads=1, dropout=0.0, max_len=200, time_buckets=128)
    for norm in (blk.norm_in, blk.norm_attn):
        assert not list(norm.parameters()) and norm.eps == 1e-6
    assert blk.time_bias is not None
    for bias in (blk.rel_bias, blk.time_bias):  # 399 and 129 draws: their spread within 30% of 0.02
        assert 0.014 < float(bias.std()) < 0.026


TIMES = torch.tensor([[0, 30, 31, 4_000, 90_000, 3 * 10**7]])  # [1, 6] seconds: every gap a bucket of its own


def test_time_buckets_are_the_references_log_buckets() -> None:
    gaps = [0, 1, 2, 10, 3_600, 86_400, 10**9, 10**30 // 10**12]
    times = torch.tensor([[0, *gaps]])  # [1, 9]
    got = time_bucket_ids(times, 128)[0]  # [9, 9]
    assert got[1:, 0].tolist() == [bucket(g, 128) for g in gaps] == [0, 0, 2, 7, 27, 37, 68, 128]
    assert torch.equal(got, got.T)  # |dt|: the same bucket either way
    assert time_bucket_ids(times, 20)[0, -1, 0].item() == 20  # clamped to the last bucket


def test_hstu_with_time_buckets_is_the_written_out_forward() -> None:
    enc = make_encoder(causal=True, block_layout="hstu", time_buckets=128).double()
    assert all(b.time_bias is not None and b.time_bias.numel() == 129 for b in enc.blocks)
    with torch.no_grad():
        got = enc(SEQ, times=TIMES)
        assert_same_outputs(got, hstu_forward(enc, SEQ, TIMES))
        # the times matter: other gaps, other outputs
        assert (got - enc(SEQ, times=TIMES * 7))[:, 1:].abs().amax() > 1e-3


@pytest.mark.parametrize("t", [0, 2, 4])
def test_hstu_with_time_buckets_is_causal_in_items_and_times(t: int) -> None:
    enc = make_encoder(causal=True, block_layout="hstu", time_buckets=64)
    items, times = SEQ.clone(), TIMES.clone()
    items[0, t + 1], times[0, t + 1] = 2, 10**8  # a different item at another time at position t + 1 only
    with torch.no_grad():
        a, b = enc(SEQ, times=TIMES), enc(items, times=times)
    assert_same_outputs(a[:, : t + 1], b[:, : t + 1])
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().amax(-1).min() > 1e-3


def test_hstu_with_time_buckets_ignores_padding_and_its_times() -> None:
    enc = make_encoder(causal=True, block_layout="hstu", time_buckets=64)
    seq, times = torch.tensor([8, 2, 12, 5]), torch.tensor([10, 400, 500, 86_400])
    narrow = (torch.cat([torch.full((1,), PAD), seq])[None], torch.cat([torch.zeros(1, dtype=torch.long), times])[None])
    wide = (torch.cat([torch.full((5,), PAD), seq])[None], torch.cat([torch.full((5,), 10**9), times])[None])
    with torch.no_grad():
        out5, out9 = enc(narrow[0], times=narrow[1]), enc(wide[0], times=wide[1])
    assert_same_outputs(out5[:, -4:], out9[:, -4:])


def test_an_hstu_with_time_buckets_needs_times_and_only_hstu_has_them() -> None:
    enc = make_encoder(causal=True, block_layout="hstu", time_buckets=8)
    with pytest.raises(ValueError, match=r"model\.time_buckets=8: the encoder needs the inputs' times"):
        enc(SEQ)
    with pytest.raises(ValueError, match="only block_layout=hstu reads timestamps"):
        make_encoder(causal=True, block_layout="ligr", time_buckets=8)


def test_hstu_relative_bias_depends_on_distance_only() -> None:
    enc = make_encoder(causal=True, block_layout="hstu")
    bias = enc.blocks[0].relative_bias(4, torch.device("cpu"))  # [4, 4]
    for offset in range(-3, 4):
        diagonal = torch.diagonal(bias, offset)
        assert torch.equal(diagonal, diagonal[:1].expand_as(diagonal))
    assert len({torch.diagonal(bias, o)[0].item() for o in range(-3, 4)}) == 7  # a value per distance


@pytest.mark.parametrize("layout", ["ligr", "hstu"])
def test_gated_layouts_refuse_post_norm(layout: str) -> None:
    with pytest.raises(ValueError, match=f"{layout} is a pre-norm layout"):
        make_encoder(causal=True, norm_first=False, block_layout=layout)
