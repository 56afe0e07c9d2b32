"""Cosine neighbours on hand-set factors, fuzzy title lookup, models without factors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from collabkit.data.interactions import Ratings
from collabkit.interpret.similar import (
    TitleNotFoundError,
    factors,
    find_item,
    similar_items,
    similar_users,
)
from collabkit.models.dot import BiasOnly, DotProduct, DotProductBias, GlobalMean
from collabkit.models.implicit import MostPopular

# item -> (factor vector, title); cos(A, B) ~ 1, cos(A, C) = 0, cos(A, D) = -1
ITEMS = {
    10: ((1.0, 0.0), "Alpha (1990)"),
    11: ((2.0, 0.1), "Beta (1991)"),
    12: ((0.0, 3.0), "Gamma (1992)"),
    13: ((-1.0, 0.0), "Delta (1993)"),
    14: ((0.5, 0.5), "Delta (1993)"),  # a second item with the same title
}


@pytest.fixture
def data() -> Ratings:
    frame = pd.DataFrame(
        {"user": [1, 1, 2, 2, 3], "item": list(ITEMS), "rating": [5.0, 4, 3, 2, 1]}
    )
    meta = pd.DataFrame(
        {"title": [t for _, t in ITEMS.values()], "genres": "Drama"}, index=list(ITEMS)
    )
    return Ratings(frame, items=meta, scale=(1.0, 5.0))


@pytest.fixture
def model(data) -> DotProduct:
    m = DotProduct.from_data(data, n_factors=2)
    with torch.no_grad():
        m.item_factors.weight.copy_(torch.tensor([f for f, _ in ITEMS.values()]))
        m.user_factors.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]))
    return m


def test_neighbours_by_cosine(model, data):
    got = similar_items(model, 10, k=4, items=data.items)
    assert got["item"].tolist() == [11, 14, 12, 13]
    want = [2 / (4.01**0.5), 0.5 / (0.5**0.5), 0.0, -1.0]
    assert got["similarity"].tolist() == pytest.approx(want, abs=1e-6)
    assert got["title"].tolist()[0] == "Beta (1991)" and "genres" in got.columns


def test_title_lookup_ignores_case_and_spaces(model, data):
    assert find_item(model, "  beta   (1991) ", data.items) == 11
    assert find_item(model, "12", data.items) == 12  # an id typed on a command line
    assert similar_items(model, "ALPHA (1990)", k=1, items=data.items)["item"].tolist() == [11]


def test_unknown_title_suggests_near_ones(model, data):
    with pytest.raises(TitleNotFoundError, match="did you mean") as err:
        find_item(model, "Gama (1992)", data.items)
    assert err.value.suggestions[0] == "Gamma (1992)"
    with pytest.raises(TitleNotFoundError) as err:
        find_item(model, "beta", data.items)  # a prefix: titles containing it come first
    assert err.value.suggestions == ["Beta (1991)"]
    with pytest.raises(TitleNotFoundError, match="no titles"):
        find_item(model, "Beta (1991)", None)


def test_duplicate_title_asks_for_an_id(model, data):
    with pytest.raises(TitleNotFoundError, match="ids 13, 14"):
        find_item(model, "Delta (1993)", data.items)


def test_candidates_restrict_neighbours(model, data):
    got = similar_items(model, 10, k=5, items=data.items, candidates=[12, 13, 10])
    assert got["item"].tolist() == [12, 13]  # never itself, only the candidates


def test_similar_users(model):
    got = similar_users(model, "1", k=2)  # '1' finds user 1
    assert got["user"].tolist() == [2, 3]
    with pytest.raises(KeyError, match="unknown user"):
        similar_users(model, 99)


def test_factors_drop_the_bias_column(data):
    m = DotProductBias.from_data(data, n_factors=3)
    assert factors(m).shape == (5, 3) and factors(m, "user").shape == (3, 3)
    assert torch.equal(factors(m), m.item_factors.weight)


@pytest.mark.parametrize("cls", [GlobalMean, BiasOnly, MostPopular])
def test_models_without_factors_are_refused(cls, data):
    with pytest.raises(ValueError, match="no item factors|no 'factors' capability"):
        factors(cls.from_data(data))


def test_bad_arguments(model, data):
    with pytest.raises(ValueError, match="side"):
        factors(model, "items")
    with pytest.raises(ValueError, match="k must"):
        similar_items(model, 10, k=0)
