"""Options that follow eSASRec's reference code (RecTools): item-table dropout, Xavier init, no embedding scale,
no final norm; per-position negatives are tested with the losses (tests/models/test_losses.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from recsys_attn.constants import PAD
from recsys_attn.data.batches import TrainBatch
from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.encoder import SequenceEncoder
from recsys_attn.models.esasrec import ESASRec
from recsys_attn.models.gru4rec import GRU4Rec
from recsys_attn.models.hstu import HSTU
from recsys_attn.models.item_embedding import FeatureEmbedding, ItemEmbedding
from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.settings import ESASRecSettings, SASRecSettings
from recsys_attn.settings import ConfigError
from tests.models.test_item_embedding import toy_features
from tests.tolerances import assert_close, tol

N_ITEMS, HIDDEN = 6, 8


def dropped_table(p: float = 0.5, seed: int = 0) -> ItemEmbedding:
    torch.manual_seed(seed)
    table = ItemEmbedding(N_ITEMS + 1, HIDDEN)
    with torch.no_grad():
        table.weight[PAD].zero_()
    table.table_dropout = p
    return table.train()


def test_item_dropout_uses_one_mask_for_the_inputs_and_the_scored_items_of_a_step() -> None:
    table = dropped_table()
    every = torch.arange(N_ITEMS + 1)[None, :]  # [1, T] each token once
    read = table(every)[0]  # [T, D] the inputs of this step
    scored = table.output_table(N_ITEMS)  # [T, D] the table its states are scored against
    assert torch.equal(read, scored)
    kept = read != 0  # [T, D]
    assert 0 < int(kept[1:].sum()) < N_ITEMS * HIDDEN  # some elements dropped, some kept
    torch.testing.assert_close(read[kept], table.weight[kept] * 2.0)  # rescaled by 1 / (1 - p), exactly


def test_item_dropout_draws_a_new_mask_each_step_and_none_in_evaluation() -> None:
    table = dropped_table()
    every = torch.arange(N_ITEMS + 1)[None, :]  # [1, T]
    first = table(every)[0]  # [T, D]
    table.output_table(N_ITEMS)
    second = table(every)[0]
    assert not torch.equal(first != 0, second != 0)
    assert torch.equal(table.output_table(N_ITEMS), second)  # the second step's own
    table.eval()
    assert torch.equal(table(every)[0], table.weight)
    assert torch.equal(table.output_table(N_ITEMS), table.weight)


def test_item_dropout_drops_its_share_of_the_table() -> None:
    torch.manual_seed(1)
    table = ItemEmbedding(2001, 64)
    table.table_dropout = 0.2
    table.train()
    dropped = float((table.output_table(2000)[1:] == 0).float().mean())  # 128,000 Bernoulli(0.2) draws
    assert abs(dropped - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 128_000)  # five standard errors


def test_item_dropout_applies_before_the_features_so_both_sides_share_it() -> None:
    table = dropped_table()
    layers = FeatureEmbedding(toy_features().spec(), N_ITEMS + 1, N_ITEMS, HIDDEN, "sum")
    layers.load(toy_features())
    table.attach(layers, "both")
    every = torch.arange(N_ITEMS + 1)[None, :]  # [1, T]
    read = table(every)[0]  # [T, D]
    assert torch.equal(read, table.output_table(N_ITEMS))
    id_part = read - layers(torch.zeros_like(table.weight))  # [T, D] the fused vectors less the features' own
    assert bool((id_part[1:] == 0).any())  # dropped id elements, features kept


@pytest.mark.parametrize("model", [SASRec, ESASRec, BERT4Rec, GRU4Rec, HSTU], ids=lambda m: m.__name__)
def test_every_model_hands_item_dropout_to_its_item_table(model: type) -> None:
    built = model(N_ITEMS, hidden_size=HIDDEN, max_len=5, bootstrap=0, item_dropout=0.3)
    tables = [m for m in built.modules() if isinstance(m, ItemEmbedding)]
    assert tables and all(t.table_dropout == 0.3 for t in tables)
    built.train()
    items = torch.tensor([[0, 1, 2, 3, 4]])  # [1, L]
    assert not torch.equal(built.states(items), built.states(items))  # the table's mask differs between steps
    built.eval()
    assert torch.equal(built.score(items), built.score(items))


def encoder(**options: Any) -> SequenceEncoder:
    torch.manual_seed(0)
    return SequenceEncoder(
        n_tokens=200, hidden=32, num_blocks=2, num_heads=1, dropout=0.0, max_len=10, causal=True, **options
    ).eval()


def test_xavier_init_gives_every_matrix_its_xavier_spread_and_zero_padding() -> None:
    enc = encoder(init="xavier", block_layout="ligr")
    stacked = {"blocks.0.ff.up.weight", "blocks.1.ff.up.weight"}  # SwiGLU's W1 and W3: each its own matrix
    assert stacked <= {name for name, _ in enc.named_parameters()}
    for name, param in enc.named_parameters():
        if param.dim() < 2:
            continue
        for block in param.chunk(2 if name in stacked else 1, dim=0):
            fan_out, fan_in = block.shape[0], block[0].numel()
            want = math.sqrt(2.0 / (fan_in + fan_out))
            values = (block[1:] if name == "item_emb.weight" else block).detach()  # padding row excluded
            n = values.numel()
            # the sample std of n normal draws is within 5 standard errors (std / sqrt(2n)) of the true one
            assert abs(float(values.std()) - want) < 5 * want / math.sqrt(2 * n), name
    assert torch.equal(enc.item_emb.weight[PAD], torch.zeros(32))
    assert float(encoder().item_emb.weight[1:].detach().std()) == pytest.approx(0.02, rel=0.05)  # N(0, 0.02)


def test_without_the_embedding_scale_the_encoder_reads_the_item_vectors_as_they_are() -> None:
    scaled, plain = encoder(), encoder(scale_embeddings=False)
    with torch.no_grad():
        plain.item_emb.weight.mul_(math.sqrt(32))  # what the scale would have multiplied in
    items = torch.tensor([[0, 0, 5, 9, 17, 3]])  # [1, L]
    assert_close(plain(items), scaled(items), rtol=tol(torch.float32, 200), what="outputs")


def test_final_norm_off_leaves_the_last_block_output() -> None:
    on, off = encoder(block_layout="ligr"), encoder(block_layout="ligr", final_norm=False)
    assert isinstance(off.final_norm, nn.Identity)
    items = torch.tensor([[0, 0, 5, 9, 17, 3]])  # [1, L]
    normed = nn.functional.layer_norm(off(items), (32,))  # [1, L, D] (unit weight, zero bias: a fresh norm)
    assert_close(on(items)[:, 2:], normed[:, 2:], rtol=tol(torch.float32, 200), what="normalised outputs")


def test_hstu_hands_its_last_block_output_to_the_cosine_without_a_layer_norm() -> None:
    """The reference's HSTU stack ends at its last layer; its states are only L2-normalised for scoring."""
    built = HSTU(N_ITEMS, hidden_size=HIDDEN, max_len=5, bootstrap=0)
    assert isinstance(built.encoder.final_norm, nn.Identity)


def test_unknown_init_and_misplaced_per_position_negatives_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.init"):
        SASRecSettings(init="kaiming")
    with pytest.raises(ConfigError, match=r"model\.negatives_per_position"):
        SASRecSettings(loss="ce", negatives_per_position=True)
    with pytest.raises(ConfigError, match=r"model\.item_dropout"):
        ESASRecSettings(item_dropout=1.0)


@pytest.mark.parametrize("own", [True, False])
def test_the_model_hands_negatives_per_position_to_its_loss(monkeypatch: pytest.MonkeyPatch, own: bool) -> None:
    seen: list[bool] = []

    def spy(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, ctx: Any) -> torch.Tensor:
        seen.append(ctx.per_position)
        return (hidden.sum() + items.sum()) * 0.0

    model = ESASRec(N_ITEMS, hidden_size=HIDDEN, max_len=5, bootstrap=0, negatives_per_position=own)
    monkeypatch.setattr(model, "loss_fn", spy)
    items = torch.tensor([[0, 1, 2, 3, 4]])  # [1, L]
    model._step_loss(TrainBatch(items, torch.tensor([[0, 2, 3, 4, 5]])))
    assert seen == [own]
