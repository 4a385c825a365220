"""Item side information in the models: the fused item table, every feature kind, and each model built with it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recsys_attn.constants import PAD
from recsys_attn.data.item_features import MISSING, NO_ITEM, FeatureColumn, ItemFeatures
from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.esasrec import ESASRec
from recsys_attn.models.gru4rec import GRU4Rec
from recsys_attn.models.hstu import HSTU
from recsys_attn.models.item_embedding import FUSIONS, FeatureEmbedding, ItemEmbedding, feature_layers
from recsys_attn.models.popularity import Popularity
from recsys_attn.models.sasrec import SASRec
from recsys_attn.models.sequential import SequentialRec
from tests.tolerances import assert_close, tol

N_ITEMS = 6
HIDDEN = 8
SMALL = {"hidden_size": HIDDEN, "max_len": 5, "dropout": 0.0, "bootstrap": 0}


def toy_features() -> ItemFeatures:
    """Items 1..6: a genre (item 6 has none), a set of tags (item 5 has none), a year (item 4 unknown), a vector."""
    genre = torch.tensor([NO_ITEM, 2, 2, 3, 3, 2, MISSING])  # vocab ("drama", "comedy")
    tags = torch.tensor([[0, 0], [2, 3], [2, 0], [3, 0], [4, 2], [MISSING, 0], [4, 0]])  # vocab ("a", "b", "c")
    year = torch.tensor([[0.0], [-1.0], [0.5], [1.0], [0.0], [0.2], [-0.3]])
    vector = torch.arange(21, dtype=torch.float32).reshape(7, 3) / 10
    none = torch.zeros(7, dtype=torch.bool)
    return ItemFeatures(
        (
            FeatureColumn("genre", "categorical", genre, genre == MISSING, ("drama", "comedy")),
            FeatureColumn("tags", "multi", tags, tags[:, 0] == MISSING, ("a", "b", "c")),
            FeatureColumn("year", "numeric", year, torch.tensor([False, False, False, False, True, False, False])),
            FeatureColumn("text", "vector", vector, none),
        )
    )


def test_without_features_the_item_table_is_the_plain_embedding() -> None:
    torch.manual_seed(0)
    table = ItemEmbedding(N_ITEMS + 1, HIDDEN)
    items = torch.tensor([[0, 3, 5], [1, 2, 6]])  # [B, L]
    assert torch.equal(table(items), nn.functional.embedding(items, table.weight))
    assert torch.equal(table.output_table(N_ITEMS), table.weight)
    assert [name for name, _ in table.named_parameters()] == ["weight"]  # old checkpoints' names


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_feature_kind_reaches_the_fused_vectors(fusion: str) -> None:
    torch.manual_seed(0)
    features = toy_features()
    layers = feature_layers(features, None, N_ITEMS + 1, N_ITEMS, HIDDEN, fusion)
    assert isinstance(layers, FeatureEmbedding)
    ids = torch.randn(N_ITEMS + 1, HIDDEN)  # [T, D]
    fused = layers(ids)  # [T, D]
    assert fused.shape == (N_ITEMS + 1, HIDDEN)
    for name in ("genre", "tags", "year", "text"):
        vectors = layers.vectors(name)  # [T, D]
        assert vectors.shape == (N_ITEMS + 1, HIDDEN)
        assert vectors[1:].abs().sum() > 0, name
    genre = layers.vectors("genre")
    assert torch.equal(genre[1], genre[2]) and not torch.equal(genre[1], genre[3])  # same value, same vector
    assert torch.equal(layers.vectors("year")[4], layers.missing_vectors["year"])  # unknown year: its own vector
    tags = layers.layers["tags"].weight
    mean = (tags[2] + tags[3]) / 2  # [D] the mean of the set
    assert_close(layers.vectors("tags")[1], mean, rtol=tol(torch.float32, 2), what="tags")


def test_rows_without_an_item_get_no_feature_vector() -> None:
    """Padding and a MASK token (rows past n_items) add nothing: the sum fusion leaves their id vector as it is."""
    torch.manual_seed(0)
    layers = feature_layers(toy_features(), None, N_ITEMS + 2, N_ITEMS, HIDDEN, "sum")
    assert layers is not None
    ids = torch.randn(N_ITEMS + 2, HIDDEN)
    fused = layers(ids)
    assert torch.equal(fused[PAD], ids[PAD]) and torch.equal(fused[N_ITEMS + 1], ids[N_ITEMS + 1])
    assert not torch.equal(fused[1], ids[1])


def test_a_checkpoint_spec_rebuilds_the_layers_and_the_state_dict_fills_them() -> None:
    torch.manual_seed(0)
    trained = feature_layers(toy_features(), None, N_ITEMS + 1, N_ITEMS, HIDDEN, "gated")
    assert trained is not None
    rebuilt = feature_layers(None, trained.spec, N_ITEMS + 1, N_ITEMS, HIDDEN, "gated")
    assert rebuilt is not None
    rebuilt.load_state_dict(trained.state_dict())
    ids = torch.randn(N_ITEMS + 1, HIDDEN)
    assert torch.equal(rebuilt(ids), trained(ids))


def test_features_of_other_items_are_refused() -> None:
    with pytest.raises(ValueError, match="describe 6 items, the model 7"):
        feature_layers(toy_features(), None, N_ITEMS + 2, N_ITEMS + 1, HIDDEN, "sum")


MODELS: list[tuple[type[SequentialRec], dict[str, object]]] = [
    (SASRec, {}),
    (BERT4Rec, {"mask_prob": 0.3}),
    (GRU4Rec, {}),
    (ESASRec, {}),  # LiGR blocks
    (HSTU, {}),  # HSTU blocks
]


@pytest.mark.parametrize(("cls", "extra"), MODELS, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("sides", ["both", "input", "output"])
def test_every_model_scores_through_its_features_and_round_trips(
    cls: type[SequentialRec], extra: dict[str, object], fusion: str, sides: str
) -> None:
    torch.manual_seed(0)
    model = cls(N_ITEMS, item_features=toy_features(), feature_fusion=fusion, feature_sides=sides, **SMALL, **extra)  # type: ignore[arg-type]
    model.eval()
    assert model.hparams["feature_spec"] == toy_features().spec()
    assert model.feature_vocab == {"genre": ["drama", "comedy"], "tags": ["a", "b", "c"]}
    items = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 1]])  # [B, L]
    scores = model.score(items)  # [B, n_items + 1]
    assert scores.shape == (2, N_ITEMS + 1) and torch.isfinite(scores).all()
    # the weights and the features travel in the state dict; the spec and the fusion in the hyper-parameters
    rebuilt = cls(**model.hparams).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.score(items), scores)
    # the features change the scores, through the sides named: other feature values, other inputs and/or outputs
    other = cls(**model.hparams).eval()
    other.load_state_dict(model.state_dict())
    values = other.encoder.item_emb.features.values_genre  # type: ignore[union-attr]
    values[1:] = 2
    assert not torch.equal(other.score(items), scores)
    with torch.no_grad():
        states_moved = not torch.equal(other.states(items), model.states(items))  # [B, L, D]
        table_moved = not torch.equal(other.encoder.item_weights(N_ITEMS), model.encoder.item_weights(N_ITEMS))
    assert (states_moved, table_moved) == (sides != "output", sides != "input")


@pytest.mark.parametrize(("cls", "extra"), MODELS, ids=lambda v: getattr(v, "__name__", ""))
def test_the_feature_layers_learn(cls: type[SequentialRec], extra: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = cls(N_ITEMS, item_features=toy_features(), **SMALL, **extra)  # type: ignore[arg-type]
    items = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 1]])
    model.score(items).logsumexp(1).sum().backward()
    layers = model.encoder.item_emb.features
    assert layers is not None
    grads = {name: p.grad for name, p in layers.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for name, g in grads.items() if name.startswith("layers.")), grads


def test_popularity_ranks_without_the_features() -> None:
    pop = torch.arange(N_ITEMS + 1, dtype=torch.float32)
    model = Popularity(N_ITEMS, item_popularity=pop, item_features=toy_features(), bootstrap=0)
    assert "item_features" not in model.hparams
    assert torch.equal(model.score(torch.tensor([[1, 2]]))[0], pop)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_an_untrained_item_is_known_by_its_features_alone(fusion: str) -> None:
    """An item no training sequence holds (training count 0) is fused without its id vector, which learnt nothing."""
    torch.manual_seed(0)
    popularity = torch.tensor([0.0, 4.0, 1.0, 0.0, 2.0, 3.0, 1.0])  # item 3 untrained
    layers = feature_layers(toy_features(), None, N_ITEMS + 2, N_ITEMS, HIDDEN, fusion, popularity)  # + a MASK
    assert isinstance(layers, FeatureEmbedding)
    assert layers.trained_ids[:, 0].tolist() == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    ids = torch.randn(N_ITEMS + 2, HIDDEN)  # [T, D]
    other = ids.clone()
    other[3] += 10.0  # item 3's id vector: ignored
    other[2] += 10.0  # item 2's: used
    fused, moved = layers(ids), layers(other)  # [T, D]
    assert torch.equal(fused[3], moved[3])
    assert not torch.allclose(fused[2], moved[2])
    without = feature_layers(toy_features(), None, N_ITEMS + 2, N_ITEMS, HIDDEN, fusion)  # no counts: every id used
    assert isinstance(without, FeatureEmbedding) and bool(without.trained_ids.bool().all())


def test_id_dropout_leaves_out_a_share_of_the_items_id_vectors_in_training_only() -> None:
    torch.manual_seed(0)
    layers = feature_layers(toy_features(), None, N_ITEMS + 2, N_ITEMS, HIDDEN, "sum", id_dropout=0.5)  # + a MASK
    assert isinstance(layers, FeatureEmbedding)
    ids = torch.randn(N_ITEMS + 2, HIDDEN)  # [T, D]
    layers.eval()
    full = layers(ids)  # [T, D]
    features_only = layers(torch.zeros_like(ids))  # [T, D]
    layers.train()
    dropped = [layers(ids) for _ in range(20)]  # 20 x [T, D]
    for row in range(1, N_ITEMS + 1):  # each item: sometimes with its id vector, sometimes by its features alone
        with_id = [bool(torch.equal(d[row], full[row])) for d in dropped]
        without = [bool(torch.equal(d[row], features_only[row])) for d in dropped]
        assert all(a or b for a, b in zip(with_id, without, strict=True)) and any(with_id) and any(without), row
    assert all(torch.equal(d[N_ITEMS + 1], full[N_ITEMS + 1]) for d in dropped)  # the MASK keeps its own
