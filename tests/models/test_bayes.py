"""Bayesian MF: the concatenated tables reproduce the posterior-mean prediction exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models import bayes
from collabkit.models.bayes import BayesianMF, _wishart
from tests.conftest import make_ratings, peak_rss


def test_tables_give_the_average_of_the_samples(tiny):
    model = BayesianMF.from_data(tiny, n_factors=3, samples=4)
    gen = torch.Generator().manual_seed(0)
    Us = torch.randn(4, len(model.users), 4, generator=gen)  # (S, users, [p, b])
    Vs = torch.randn(4, len(model.items), 4, generator=gen)
    model._store(Us, Vs, mu=3.5)
    u, i = torch.tensor([0, 3, 7]), torch.tensor([1, 1, 9])
    per_sample = 3.5 + (Us[:, u, :3] * Vs[:, i, :3]).sum(-1) + Us[:, u, 3] + Vs[:, i, 3]  # (S, 3)
    model.config.clip = None
    torch.testing.assert_close(model.score(u, i), per_sample.mean(0))


def test_wishart_draws_have_the_right_mean():
    rng = np.random.default_rng(0)
    W = np.array([[2.0, 0.3], [0.3, 0.5]])
    mean = np.mean([_wishart(5.0, W, rng) for _ in range(4000)], axis=0)
    np.testing.assert_allclose(mean, 5.0 * W, rtol=0.05, atol=0.05)  # E = nu W


def test_a_draw_is_the_textbook_conditional_draw(monkeypatch):
    """Blocks of outer products and two triangular solves draw what P^-1 b + chol(P)^-T z does,
    P and b summed over all the ratings at once (blocks of 7 ratings: the last one partial)."""
    monkeypatch.setattr(bayes, "OUTER_CELLS", 7 * 16)
    g = torch.Generator().manual_seed(1)
    rows, cols = torch.randint(0, 30, (500,), generator=g), torch.randint(0, 20, (500,), generator=g)
    target, feats = torch.randn(500, generator=g, dtype=torch.float64), torch.randn(20, 4, dtype=torch.float64, generator=g)
    X = torch.randn(30, 4, generator=g, dtype=torch.float64)
    got = bayes._draw_rows(rows, cols, target, feats, X, 2.0, np.random.default_rng(3), torch.Generator().manual_seed(4))

    m, L = bayes._draw_hyper(X, np.random.default_rng(3))
    f = feats[cols]
    P = torch.zeros(30, 4, 4, dtype=torch.float64).index_put_((rows,), f[:, :, None] * f[:, None, :], accumulate=True)
    P = 2.0 * P + L
    b = 2.0 * torch.zeros(30, 4, dtype=torch.float64).index_put_((rows,), f * target[:, None], accumulate=True) + L @ m
    chol = torch.linalg.cholesky(P)
    z = torch.randn(30, 4, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want = torch.cholesky_solve(b[:, :, None], chol) + torch.linalg.solve_triangular(chol.mT, z, upper=True)
    torch.testing.assert_close(got, want.squeeze(2))


def test_a_sweep_holds_one_block_of_outer_products():
    """200 k ratings at d = 21: all the outer products at once are 706 MB of float64; a block
    is 4 MB, so the draw's peak stays near the per-rating gathers (~24 d + 150 bytes a rating)."""
    n_rows, R, d = 2000, 200_000, 21
    g = torch.Generator().manual_seed(0)
    rows, cols = torch.randint(0, n_rows, (R,), generator=g), torch.randint(0, 500, (R,), generator=g)
    feats = torch.randn(500, d, generator=g, dtype=torch.float64)
    X = torch.randn(n_rows, d, generator=g, dtype=torch.float64)
    target = torch.randn(R, generator=g, dtype=torch.float64)
    _, peak = peak_rss(bayes._draw_rows, rows, cols, target, feats, X, 2.0, np.random.default_rng(0), g)
    assert peak < 150e6, peak / 1e6  # before the blocks: > 700 MB


def test_learns_clips_and_round_trips(tmp_path):
    data = make_ratings(seed=4)
    train, test = ck.random_split(data, 0.2, seed=0)
    model = BayesianMF.from_data(train, n_factors=3, samples=20, burn_in=10)
    history = model.fit(train)
    assert len(history.rows) == 30 and history.fit_seconds > 0
    mean = ck.GlobalMean.from_data(train)
    assert ck.evaluate_ratings(model, test)["rmse"] < 0.9 * ck.evaluate_ratings(mean, test)["rmse"]
    out = model.predict(test.frame["user"], test.frame["item"])
    assert out.min() >= 1.0 and out.max() <= 5.0
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(out, again.predict(test.frame["user"], test.frame["item"]))


def test_same_seed_same_model(tiny):
    a, b = (BayesianMF.from_data(tiny, n_factors=2, samples=3, burn_in=2, seed=5) for _ in range(2))
    a.fit(tiny), b.fit(tiny)
    assert torch.equal(a.user_factors.weight, b.user_factors.weight)


def test_unknown_user_scores_the_baseline(tiny):
    model = BayesianMF.from_data(tiny, n_factors=2, samples=3, burn_in=2)
    model.fit(tiny)
    item = tiny.frame["item"].iloc[0]
    out = model.predict(["nobody"], [item])
    i = int(model.items.lookup([item])[0])
    want = np.clip(float(tiny.frame["rating"].mean()) + float(model.baseline_item[i]), 1, 5)
    assert out[0] == pytest.approx(want, rel=1e-5)
