"""GRU4Rec: padding invariance of the GRU encoder, causality, and that it learns a sequence."""

from __future__ import annotations

import pytest
import torch

from recsys_attn.constants import PAD
from recsys_attn.data.batches import next_item_batch
from recsys_attn.evaluation.metrics import target_ranks
from recsys_attn.models.gru4rec import GRU4Rec, GRUEncoder
from tests.tolerances import assert_close, tol

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

N_ITEMS = 12
HIDDEN = 16
GRU_OPS = 500
"""Roundings behind one state of a ``make_encoder`` GRU: up to 6 steps of 2 layers, each gate a sum of 2 x 16 terms
and a few element-wise operations (~40 a step and layer)."""


def make_encoder(num_layers: int = 2, seed: int = 0) -> GRUEncoder:
    """A small encoder in eval mode with random weights and biases (biases are what padding would leak)."""
    torch.manual_seed(seed)
    enc = GRUEncoder(N_ITEMS + 1, HIDDEN, num_layers, dropout=0.3)  # eval mode must switch dropout off
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        enc.item_emb.weight[PAD].zero_()
    return enc.eval()


SEQS = [[4, 7, 1, 9, 3, 11], [5, 2], [8], [6, 6, 10, 12]]


def left_padded(seqs: list[list[int]], width: int) -> torch.Tensor:
    return torch.tensor([[PAD] * (width - len(s)) + s for s in seqs])  # [B, width]


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("width", [6, 7, 11])
def test_padding_never_changes_the_states_of_a_sequence(num_layers: int, width: int) -> None:
    enc = make_encoder(num_layers)
    with torch.no_grad():
        out = enc(left_padded(SEQS, width))  # [B, width, D]
        for row, seq in enumerate(SEQS):
            alone = enc(torch.tensor([seq]))[0]  # [len, D] the sequence without any padding
            # a batch of 4 or of 1: its products may be blocked, so summed, otherwise
            assert_close(out[row, width - len(seq) :], alone, rtol=tol(torch.float32, GRU_OPS), what=f"row {row}")
            assert not out[row, : width - len(seq)].any()  # zero at padding


def test_without_the_rotation_padding_would_leak() -> None:
    """The check above is not vacuous: a plain GRU over left padding moves its state before the items."""
    enc = make_encoder()
    with torch.no_grad():
        plain, _ = enc.gru(enc.item_emb(left_padded([[5, 2]], 6)))  # [1, 6, D]
        alone, _ = enc.gru(enc.item_emb(torch.tensor([[5, 2]])))  # [1, 2, D]
    assert (plain[0, -2:] - alone[0]).abs().max() > 1e-3


@pytest.mark.parametrize("t", [0, 2, 4])
def test_states_ignore_later_items(t: int) -> None:
    enc = make_encoder()
    seq = torch.tensor([SEQS[0]])  # [1, 6]
    changed = seq.clone()
    changed[0, t + 1] = 2
    with torch.no_grad():
        a, b = enc(seq), enc(changed)  # [1, 6, D]
    # exact: the states up to t come from the same operations on the same inputs in both runs, on any CPU
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=0)
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().amax(-1).min() > 1e-4  # later positions do see it


def test_gru4rec_learns_a_cycle() -> None:
    torch.manual_seed(0)
    n_items, length = 7, 6
    model = GRU4Rec(n_items, max_len=length, hidden_size=32, lr=1e-2)
    starts = torch.arange(n_items)[:, None]  # [n, 1]
    windows = (starts + torch.arange(length + 1)[None, :]) % n_items + 1  # [n, L + 1] the cycle 1 -> ... -> 7 -> 1
    batch = next_item_batch(windows)
    opt = model.configure_optimizers()
    for _ in range(150):
        opt.zero_grad()
        model.training_step(batch, 0).backward()
        opt.step()
    model.eval()
    for short in (length, 2, 1):  # from any prefix, the next item ranks first
        with torch.no_grad():
            scores = model.score(windows[:, length - short : length])  # [n, n_items + 1]
        assert torch.equal(target_ranks(scores, windows[:, -1]), torch.zeros(n_items, dtype=torch.long)), short
