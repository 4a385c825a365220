"""The item table every encoder shares: item-id embeddings, fused with the items' side information when a run has it.

``ItemEmbedding`` is an ``nn.Embedding`` (its weight keeps the name and shape of the plain id table, so runs and
checkpoints without features are unchanged) that may carry a ``FeatureEmbedding``: one layer per feature (an
``EmbeddingBag`` per multi-valued feature, an ``Embedding`` per categorical one, a projection per numeric or vector
one) over the encoded features (``data.item_features``), held as buffers so that a checkpoint carries them and
evaluate, predict, export and ope need nothing else. The fused table ``[n_tokens, D]`` is built once per call
from every item's id vector and features; the input side looks items up in it, the output side scores the
states against it (``model.feature_sides``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_attn.constants import PAD
from recsys_attn.data.item_features import NO_ITEM, ItemFeatures

FUSIONS = ("sum", "concat", "gated")
"""``model.feature_fusion``: ``sum`` adds every feature's vector to the id vector; ``concat`` projects the id
vector and the feature vectors, concatenated, back to the hidden size; ``gated`` adds the features' sum scaled by
a learned sigmoid gate of ``[id; features]`` (per item and dimension)."""
SIDES = ("both", "input", "output")
"""``model.feature_sides``: where the fused vectors are used: the items a sequence reads (input), the item vectors
its states are scored against (output), or both."""


class FeatureEmbedding(nn.Module):
    """Every feature of every token embedded, then fused with the tokens' id vectors.

    ``spec`` is ``ItemFeatures.spec()`` (``{name: {kind, size, width}}``): the layers are built from it alone,
    with zero buffers, so a checkpoint (whose hyper-parameters keep the spec) restores them; ``load`` fills the
    buffers from a run's ``ItemFeatures``. Tokens past the items (a MASK) have no features.
    """

    item_rows: Tensor
    trained_ids: Tensor

    def __init__(
        self,
        spec: dict[str, dict[str, Any]],
        n_tokens: int,
        n_items: int,
        hidden: int,
        fusion: str,
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"model.feature_fusion: expected one of {', '.join(FUSIONS)} (got {fusion!r})")
        bad = [name for name in spec if not name.isidentifier()]
        if bad:
            raise ValueError(f"feature names must be identifiers (letters, digits, '_'): {bad}")
        self.spec, self.fusion, self.n_items, self.id_dropout = spec, fusion, n_items, id_dropout
        self.layers = nn.ModuleDict()
        self.missing_vectors = nn.ParameterDict()
        for name, s in spec.items():
            kind, size, width = s["kind"], int(s["size"]), int(s["width"])
            if kind == "categorical":
                self.layers[name] = nn.Embedding(size, hidden, padding_idx=NO_ITEM)
                self.register_buffer(_values(name), torch.zeros(n_tokens, dtype=torch.long))  # [T]
            elif kind == "multi":
                self.layers[name] = nn.EmbeddingBag(size, hidden, mode="mean", padding_idx=NO_ITEM)
                self.register_buffer(_values(name), torch.zeros(n_tokens, width, dtype=torch.long))  # [T, W]
            else:  # numeric, vector: a projection, and a learned vector for items without a value
                self.layers[name] = nn.Linear(width, hidden)
                self.missing_vectors[name] = nn.Parameter(torch.zeros(hidden))
                self.register_buffer(_values(name), torch.zeros(n_tokens, width))  # [T, width]
                self.register_buffer(_missing(name), torch.zeros(n_tokens, dtype=torch.bool))  # [T]
        items = torch.zeros(n_tokens, 1)  # [T, 1] 1 for the rows of real items (1..n_items)
        items[1 : n_items + 1] = 1.0
        self.register_buffer("item_rows", items)
        # [T, 1] 0 for an item no training sequence holds (a cold item): its id vector never learnt anything, so it
        # is left out and the item is known by its features alone (``untrained``); 1 elsewhere
        self.register_buffer("trained_ids", torch.ones(n_tokens, 1))
        n = len(spec)
        self.project = nn.Linear((n + 1) * hidden, hidden) if fusion == "concat" else None
        self.gate = nn.Linear(2 * hidden, hidden) if fusion == "gated" else None
        for layer in self.layers.values():
            if isinstance(layer, nn.Embedding | nn.EmbeddingBag):
                nn.init.normal_(layer.weight, std=0.02)
                with torch.no_grad():
                    layer.weight[NO_ITEM].zero_()
            elif isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        for module in (self.project, self.gate):
            if module is not None:
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        if self.project is not None:  # start as the id vector alone: the identity on its block, features learnt in
            with torch.no_grad():
                self.project.weight[:, :hidden] += torch.eye(hidden)

    def load(self, features: ItemFeatures) -> None:
        """Copy the run's encoded features into the buffers (rows 0..n_items; later tokens stay featureless)."""
        if features.spec() != self.spec:
            raise ValueError(f"features {features.spec()} do not match the model's {self.spec}")
        if features.n_items != self.n_items:
            raise ValueError(f"features describe {features.n_items} items, the model {self.n_items}")
        rows = self.n_items + 1
        with torch.no_grad():
            for column in features.columns:
                getattr(self, _values(column.name))[:rows] = column.values.reshape(
                    getattr(self, _values(column.name))[:rows].shape
                )
                if column.kind in ("numeric", "vector"):
                    getattr(self, _missing(column.name))[:rows] = column.missing

    def untrained(self, popularity: Tensor) -> None:
        """Know the items whose training count in ``popularity`` ``[n_items + 1]`` is 0 by their features alone."""
        with torch.no_grad():
            self.trained_ids[1 : self.n_items + 1] = (popularity[1 : self.n_items + 1] > 0).float()[:, None]

    def vectors(self, name: str) -> Tensor:
        """The feature ``name``'s vector of every token ``[T, D]``."""
        kind = self.spec[name]["kind"]
        layer, values = self.layers[name], getattr(self, _values(name))
        if kind in ("categorical", "multi"):
            return layer(values)  # [T, D] (multi: the mean over the item's values; no value: MISSING's vector)
        missing = getattr(self, _missing(name))[:, None]  # [T, 1]
        return torch.where(missing, self.missing_vectors[name], layer(values))  # [T, D]

    def forward(self, ids: Tensor) -> Tensor:
        """The fused vectors ``[T, D]`` of the tokens whose id vectors are ``ids`` ``[T, D]``."""
        known = self.trained_ids  # [T, 1] a cold item's untrained id vector is left out
        if self.training and self.id_dropout > 0.0:  # and, in training, a random share of the other items'
            kept = torch.bernoulli(torch.full_like(known, 1.0 - self.id_dropout))  # [T, 1]
            known = known * torch.where(self.item_rows > 0, kept, 1.0)  # [T, 1] padding and MASK keep theirs
        ids = ids * known  # [T, D]
        parts = [self.vectors(name) * self.item_rows for name in self.spec]  # F x [T, D], zero off the items
        if self.project is not None:
            return self.project(torch.cat([ids, *parts], dim=-1))  # [T, D]
        features = torch.stack(parts).sum(0)  # [T, D]
        if self.gate is not None:
            return ids + torch.sigmoid(self.gate(torch.cat([ids, features], dim=-1))) * features  # [T, D]
        return ids + features  # [T, D]


def _values(name: str) -> str:
    return f"values_{name}"


def _missing(name: str) -> str:
    return f"missing_{name}"


class ItemEmbedding(nn.Embedding):
    """Item-id vectors ``[n_tokens, D]`` (row ``PAD`` zero), fused with features on the sides ``sides`` names.

    Without features and without ``table_dropout`` it is exactly the ``nn.Embedding`` it subclasses (same
    parameter, same computation). ``table_dropout`` (``model.item_dropout``) drops out elements of the id table in
    training, one mask per step: ``forward`` draws it and keeps the dropped table, and the ``output_table`` that
    follows in the same step scores against that table (and lets it go), so a step's inputs and scored items share
    the mask, as in RecTools' eSASRec.
    """

    features: FeatureEmbedding | None

    def __init__(self, n_tokens: int, hidden: int) -> None:
        super().__init__(n_tokens, hidden, padding_idx=PAD)
        self.features, self.sides = None, "both"
        self.table_dropout = 0.0
        self._step_table: Tensor | None = None  # [T, D] this training step's dropped-out id table

    def attach(self, features: FeatureEmbedding | None, sides: str) -> None:
        """Fuse ``features`` into the vectors of ``sides`` (after the encoder has initialised its own weights)."""
        if sides not in SIDES:
            raise ValueError(f"model.feature_sides: expected one of {', '.join(SIDES)} (got {sides!r})")
        self.features, self.sides = features, sides

    def _ids(self, draw: bool) -> Tensor:
        """The id table ``[T, D]`` of this step: dropped out in training with ``table_dropout`` (a new mask when
        ``draw``, else the one ``forward`` drew, which is then released), the weight itself otherwise."""
        if not (self.training and self.table_dropout > 0.0):
            return self.weight
        table = self._step_table
        if draw or table is None:
            table = F.dropout(self.weight, self.table_dropout, training=True)  # [T, D]
        self._step_table = table if draw else None
        return table

    def forward(self, items: Tensor) -> Tensor:
        """Input vectors ``[..., D]`` of token ids ``[...]``."""
        if self.table_dropout == 0.0 and (self.features is None or self.sides == "output"):
            return super().forward(items)
        ids = self._ids(draw=True)  # [T, D]
        if self.features is None or self.sides == "output":
            return F.embedding(items, ids, padding_idx=PAD)  # [..., D]
        return F.embedding(items, self.features(ids), padding_idx=PAD)  # [..., D]

    def output_table(self, n_items: int) -> Tensor:
        """The item vectors ``[n_items + 1, D]`` (row 0 = padding) sequence states are scored against."""
        ids = self._ids(draw=False)  # [T, D]
        if self.features is None or self.sides == "input":
            return ids[: n_items + 1]
        return self.features(ids)[: n_items + 1]  # [n_items + 1, D]


def feature_layers(
    features: ItemFeatures | None,
    spec: dict[str, dict[str, Any]] | None,
    n_tokens: int,
    n_items: int,
    hidden: int,
    fusion: str,
    popularity: Tensor | None = None,
    id_dropout: float = 0.0,
) -> FeatureEmbedding | None:
    """The feature layers of a model: from a run's ``features`` (buffers filled; the items ``popularity``
    ``[n_items + 1]`` counts 0 times known by their features alone), or from a checkpoint's ``spec`` (buffers its
    state dict fills); None without features. ``id_dropout``: ``model.feature_id_dropout``."""
    if features is not None:
        spec = features.spec()
    if not spec:
        return None
    layers = FeatureEmbedding(spec, n_tokens, n_items, hidden, fusion, id_dropout)
    if features is not None:
        layers.load(features)
        if popularity is not None and bool(popularity[1:].any()):  # no counts at all: not a training run's
            layers.untrained(popularity)
    return layers
