"""model=feature_popularity: items ranked by the training counts of the items that share their feature values."""

import math

import pytest
import torch

from recsys_attn.data.item_features import MISSING, NO_ITEM, FeatureColumn, ItemFeatures
from recsys_attn.errors import ConfigError
from recsys_attn.models.feature_popularity import (
    FeaturePopularity,
    binned,
    feature_popularity_scores,
    tie_broken,
    value_popularity,
)


def genre(values: list[int]) -> FeatureColumn:
    codes = torch.tensor(values)
    return FeatureColumn("genre", "categorical", codes, codes == MISSING, ("drama", "comedy"))


POPULARITY = torch.tensor([0.0, 4.0, 2.0, 0.0, 6.0, 0.0])  # items 3 and 5 untrained (cold)


def test_a_value_is_worth_the_mean_count_of_the_trained_items_that_have_it() -> None:
    column = genre([NO_ITEM, 2, 2, 2, 3, 3])  # drama: items 1, 2, 3; comedy: 4, 5
    got = value_popularity(column, POPULARITY)
    # drama: trained items 1 and 2 -> (4 + 2) / 2 = 3; comedy: trained item 4 -> 6; cold items 3, 5 count not
    assert got.tolist() == [0.0, 3.0, 3.0, 3.0, 6.0, 6.0]


def test_a_multi_valued_item_averages_its_values_and_features_add_up_in_log() -> None:
    tags = torch.tensor([[0, 0], [2, 0], [3, 0], [2, 3], [3, 0], [MISSING, 0]])  # a: 1, 3; b: 2, 3, 4
    features = ItemFeatures(
        (genre([NO_ITEM, 2, 2, 2, 3, 3]), FeatureColumn("tags", "multi", tags, tags[:, 0] == MISSING, ("a", "b")))
    )
    # tag a: trained item 1 -> 4; tag b: trained 2 and 4 -> 4; MISSING: nobody trained -> 0
    assert value_popularity(features.columns[1], POPULARITY).tolist() == [0.0, 4.0, 4.0, 4.0, 4.0, 0.0]
    # genre + tags in log: items 1-3 log1p(3) + log1p(4), item 4 log1p(6) + log1p(4), item 5 log1p(6) + 0
    scores = feature_popularity_scores(features, POPULARITY)
    assert scores[0] == 0.0 and scores[4] == 5.0 and scores[5] == 1.0  # ranks: the best last
    assert sorted(scores[1:4].tolist()) == [2.0, 3.0, 4.0]  # three items of one score: a seeded random order
    assert math.log1p(6.0) < math.log1p(3.0) + math.log1p(4.0)  # why item 5 ranks below items 1-3
    model = FeaturePopularity(5, POPULARITY, features, bootstrap=0)
    assert torch.equal(model.score(torch.ones(2, 3, dtype=torch.long))[1], scores)


def test_ties_are_broken_at_random_and_nothing_else_moves() -> None:
    scores = torch.tensor([0.0, 1.0, 5.0, 1.0, 1.0, 0.5, 5.0])
    ranks = tie_broken(scores)
    assert ranks[0] == 0.0 and len(set(ranks[1:].tolist())) == 6
    assert ranks[5] < min(ranks[1], ranks[3], ranks[4]) and max(ranks[1], ranks[3], ranks[4]) < min(ranks[2], ranks[6])
    assert torch.equal(ranks, tie_broken(scores)) and not torch.equal(ranks, tie_broken(scores, seed=1))


def test_a_number_counts_by_its_quantile_bin() -> None:
    values = torch.tensor([[0.0], [1.0], [2.0], [9.0], [10.0], [0.0]])  # item 5 has no value
    missing = torch.tensor([False, False, False, False, False, True])
    year = binned(FeatureColumn("year", "numeric", values, missing), bins=2)
    assert year.kind == "categorical" and year.values.tolist() == [NO_ITEM, 2, 2, 3, 3, MISSING]
    # bin 0: trained items 1 and 2 -> 3; bin 1: trained item 4 -> 6; item 3 is cold but binned like 4
    assert value_popularity(year, POPULARITY).tolist() == [0.0, 3.0, 3.0, 6.0, 6.0, 0.0]


def test_it_needs_categorical_or_numeric_features() -> None:
    with pytest.raises(ConfigError, match="set features=<name>"):
        FeaturePopularity(5, POPULARITY)
    text = FeatureColumn("text", "vector", torch.zeros(6, 4), torch.zeros(6, dtype=torch.bool))
    with pytest.raises(ConfigError, match=r"have none"):
        FeaturePopularity(5, POPULARITY, ItemFeatures((text,)))
