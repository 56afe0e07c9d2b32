"""Contract details of the gradient-trained kinds (the shared suite is test_conformance.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.models.base import default_y_range, get_model_class

MODELS = ["dot", "dot-bias", "nn", "bias", "mean", "hybrid"]


def trained(kind: str, ratings: ck.Ratings, epochs: int = 5) -> ck.CollabModel:
    model = get_model_class(kind).from_data(ratings, seed=0)
    model.fit(ratings, epochs=epochs, lr_max=1e-2, wd=0.01, bs=32)
    return model


def test_predictions_come_in_chunks_sized_by_the_representation(tiny, monkeypatch):
    """Wide models (Bayesian MF's are thousands of columns) score in small chunks, same result."""
    from collabkit.models import base

    model = trained("dot-bias", tiny, epochs=1)
    u = torch.arange(3000) % len(model.users)
    i = torch.arange(3000) % len(model.items)
    whole = model.predict_idx(u, i)
    calls = []
    score = model.score
    monkeypatch.setattr(model, "score", lambda a, b: calls.append(len(a)) or score(a, b))
    monkeypatch.setattr(base, "PREDICT_CELLS", 1)  # every chunk at the 1024-pair floor
    torch.testing.assert_close(model.predict_idx(u, i), whole)
    assert calls == [1024, 1024, 952]


@pytest.mark.parametrize("kind", ["dot-bias", "nn", "bias"])
def test_predictions_stay_inside_y_range(kind, tiny):
    model = trained(kind, tiny, epochs=1)
    low, high = model.config.y_range
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50)  # push pre-activations far out
    out = model.predict(tiny.frame["user"], tiny.frame["item"])
    assert (out >= low).all() and (out <= high).all()


def test_default_y_range_matches_the_chapter():
    assert default_y_range((1, 5)) == (0.0, 5.5)
    low, high = default_y_range((0.5, 5))
    assert low == 0.0 and 5.5 < high < 5.7


@pytest.mark.parametrize("kind", ["dot", "dot-bias", "nn"])
def test_learns_better_than_the_mean(kind, tiny):
    model = trained(kind, tiny, epochs=30)
    rmse = ck.evaluate_ratings(model, tiny)["rmse"]
    base = float(tiny.frame["rating"].std(ddof=0))
    assert rmse < 0.8 * base


@pytest.mark.parametrize("kind", ["dot", "dot-bias"])
def test_checkerboard_oracle(kind):
    """Two taste groups: user group g loves item group g and dislikes the other; the model must find it."""
    users, items = np.arange(40), np.arange(40)
    u, i = np.meshgrid(users, items, indexing="ij")
    u, i = u.ravel(), i.ravel()
    keep = np.random.default_rng(0).random(len(u)) < 0.6
    rating = np.where(u % 2 == i % 2, 5.0, 1.0)
    r = ck.Ratings(pd.DataFrame({"user": u[keep], "item": i[keep], "rating": rating[keep]}), scale=(1, 5))
    model = get_model_class(kind).from_data(r, n_factors=4, seed=0)
    model.fit(r, epochs=40, lr_max=3e-2, wd=0.0, bs=64)
    held_u, held_i = u[~keep], i[~keep]
    pred = model.predict(held_u, held_i)
    assert ((pred > 3) == (held_u % 2 == held_i % 2)).mean() > 0.95


def test_embedding_is_one_hot_times_matrix(tiny):
    """The chapter's identity: looking up row k equals one_hot(k) @ table."""
    model = ck.DotProductBias.from_data(tiny)
    table = model.user_factors.weight.detach()
    idx = torch.tensor([0, 3, 7])
    one_hot = torch.nn.functional.one_hot(idx, len(model.users)).float()
    torch.testing.assert_close(model.user_factors(idx).detach(), one_hot @ table)


def test_score_all_items_matches_pairwise(tiny):
    for kind in ["dot", "dot-bias", "nn"]:
        model = trained(kind, tiny, epochs=1)
        u = torch.tensor([0, 2, 5])  # known users: unknown ones get the average-taste user in top-N
        full = model.score_all_items(u)
        pairs = model.predict_idx(u.repeat_interleave(len(model.items)), torch.arange(len(model.items)).repeat(3))
        torch.testing.assert_close(full, pairs.view(3, -1), rtol=1e-5, atol=1e-5)


def test_emb_size_rule_matches_fastai():
    from collabkit.models.neural import emb_size

    assert emb_size(944) == 74 and emb_size(1665) == 102


@pytest.mark.parametrize("kind", ["dot-bias", "dot", "ordinal"])
def test_the_link_gives_numpy_for_numpy_and_the_same_numbers(kind, tiny):
    """Fold-in's compiled steps call the kind's link on numpy arrays (no torch per call)."""
    from collabkit.models.base import get_model_class

    model = get_model_class(kind).from_data(tiny, seed=0)
    z = np.linspace(-40, 40, 101)  # far past where exp(-z) overflows a float64
    f, df = model.link(z)
    ft, dft = model.link(torch.from_numpy(z))
    assert isinstance(f, np.ndarray) and isinstance(df, np.ndarray) and np.isfinite(f).all()
    np.testing.assert_allclose(f, ft.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(df, dft.detach().numpy(), rtol=1e-9, atol=1e-12)
