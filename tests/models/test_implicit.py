"""Implicit models (most-popular, EASE, iALS, BPR): the model contract, their maths, and ML-100k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.data.implicit import interactions, to_implicit
from collabkit.evaluate.ranking import evaluate_ranking
from collabkit.models.base import get_model_class
from collabkit.models.implicit import ALS, KINDS, MostPopular, _als_half_step, _als_loss, _als_rows
from collabkit.recommend import recommend, seen_csr, top_n
from collabkit.train.build import build_model
from tests.conftest import make_ratings, peak_rss

FAST = {
    "als": {"iterations": 5, "n_factors": 8},
    "bpr": {"epochs": 3, "n_factors": 8},
    "ease": {"reg": 10.0},
}


@pytest.fixture(scope="module")
def positives() -> ck.Ratings:
    return to_implicit(make_ratings(), threshold=4)


def spec(kind: str, **options) -> str:
    """'kind(name=value, ...)' for build_model."""
    text = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return f"{kind}({text})" if text else kind


def fitted(kind: str, data: ck.Ratings, **options) -> ck.CollabModel:
    return build_model(spec(kind, **{**FAST.get(kind, {}), **options}), data)[0]


def test_every_kind_is_registered():
    for kind in KINDS:
        assert get_model_class(kind).kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_loop(kind, positives):
    model = fitted(kind, positives)
    f = positives.frame.head(15)
    batch = model.predict(f["user"], f["item"])
    loop = np.array([model.predict([u], [i])[0] for u, i in zip(f["user"], f["item"])])
    np.testing.assert_allclose(batch, loop, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_score_all_items_matches_pairwise(kind, positives):
    model = fitted(kind, positives)
    u = torch.tensor([0, 3, -1])
    n = len(model.items)
    full = model.score_all_items(u)
    pairs = model.predict_idx(u.repeat_interleave(n), torch.arange(n).repeat(3)).view(3, n)
    torch.testing.assert_close(full, pairs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_identical(kind, positives, tmp_path):
    model = fitted(kind, positives)
    save_model(model, tmp_path / kind, items=positives.items)
    again = load_model(tmp_path / kind)
    f = positives.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )
    assert again.meta["implicit"] is True and again.config == model.config


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_ids_use_the_zero_fallback(kind, positives):
    model = fitted(kind, positives)
    item = positives.frame["item"].iloc[0]
    out = model.predict(
        ["nobody", 10**9, positives.frame["user"].iloc[0]], [item, item, "no-such-item"]
    )
    assert np.isfinite(out).all() and out[0] == out[1] and out[2] == 0.0


@pytest.mark.parametrize("kind", ["ease", "als", "bpr"])
def test_checkerboard_oracle(kind):
    """Two taste groups: user g interacts only with items of parity g; held-out pairs must come first."""
    u, i = (a.ravel() for a in np.meshgrid(np.arange(40), np.arange(40), indexing="ij"))
    same = u % 2 == i % 2
    held = np.random.default_rng(0).random(len(u)) < 0.3
    frame = pd.DataFrame({"user": u[same & ~held], "item": i[same & ~held], "rating": 1.0})
    train = ck.Ratings(frame, scale=(0, 1))
    options = {
        "als": {"n_factors": 4, "iterations": 10},
        "bpr": {"n_factors": 4, "epochs": 30},
    }.get(kind, {})
    model = build_model(spec(kind, **options), train)[0]
    users = np.arange(len(model.users))
    recs, _ = top_n(model, users, 3, seen=seen_csr(model, train))
    raw_users, raw_items = (
        model.users.decode(users),
        model.items.decode(recs.ravel()).reshape(recs.shape),
    )
    assert ((raw_items % 2) == (raw_users[:, None] % 2)).mean() > 0.95


def test_most_popular_ranks_by_count_for_everyone(positives):
    model = fitted("most-popular", positives)
    counts = positives.frame["item"].value_counts()
    scores = model.predict(["nobody"] * len(counts), counts.index)
    np.testing.assert_array_equal(scores, counts.to_numpy(dtype=np.float32))


def test_ease_matches_the_closed_form(positives):
    """B = I - P diag(1/diag(P)), P = (X^T X + reg I)^-1, and scores = X B (Steck 2019), in numpy."""
    reg = 7.0
    model = fitted("ease", positives, reg=reg)
    X = positives.frame.pivot_table(index="user", columns="item", values="rating", fill_value=0.0)
    X = X.reindex(index=model.users.ids, columns=model.items.ids, fill_value=0.0).to_numpy(
        np.float64
    )
    P = np.linalg.inv(X.T @ X + reg * np.eye(X.shape[1]))
    B = np.eye(len(P)) - P / np.diag(P)
    np.testing.assert_allclose(model.B.numpy(), B, atol=1e-5)
    assert (np.diag(model.B.numpy()) == 0).all()
    np.testing.assert_allclose(
        model.score_all_items(torch.arange(len(X))).numpy(), X @ B, atol=1e-4
    )


def test_ease_loss_is_the_objective_over_chunks_of_users(positives, monkeypatch):
    """The History's loss ||X - XB||^2 + reg ||B||^2, summed over user chunks of a few rows."""
    monkeypatch.setattr("collabkit.models.implicit.EASE_CHUNK_CELLS", 3 * len(positives.frame["item"].unique()))
    reg = 7.0
    model = get_model_class("ease").from_data(positives, reg=reg)
    history = model.fit(positives)
    X = positives.frame.pivot_table(index="user", columns="item", values="rating", fill_value=0.0)
    X = X.reindex(index=model.users.ids, columns=model.items.ids, fill_value=0.0).to_numpy(np.float64)
    B = model.B.numpy().astype(np.float64)
    want = ((X - X @ B) ** 2).sum() + reg * (B**2).sum()
    assert history.rows[0]["train_loss"] == pytest.approx(want, rel=1e-5)


def test_ease_refuses_a_catalogue_past_its_limit_before_allocating(positives, monkeypatch):
    monkeypatch.setattr("collabkit.models.implicit.EASE_MAX_ITEMS", 10)
    with pytest.raises(ValueError, match=r"limit is 10 items.*als or bpr"):
        get_model_class("ease").from_data(positives)
    with pytest.raises(ValueError, match="limit is 10 items"):
        build_model("ease", positives, threshold=None)


def test_ease_fold_in_rebuilds_a_known_users_row(positives):
    model = fitted("ease", positives)
    data = interactions(positives, model.users, model.items)
    row = data.items[data.indptr[2] : data.indptr[3]]
    torch.testing.assert_close(
        model.fold_in(torch.from_numpy(row)), model.user_repr(torch.tensor([2]))[0]
    )


def test_als_loss_never_increases(positives):
    model = ALS.from_data(positives, n_factors=6, reg=0.5, alpha=5.0, seed=1)
    losses = model.fit(positives, iterations=12).to_frame()["train_loss"].to_numpy()
    assert len(losses) == 12
    assert (np.diff(losses) <= 1e-9 * losses[:-1]).all()
    assert losses[-1] < losses[0]


def test_als_half_step_is_the_exact_minimiser(positives):
    """After solving the users, the gradient of the full iALS loss with respect to X is zero."""
    model = ALS.from_data(positives, n_factors=5, reg=0.3, alpha=4.0)
    data = interactions(positives, model.users, model.items)
    w = data.weights.astype(np.float64)
    Y = torch.randn(len(model.items), 5, dtype=torch.float64)
    rows = _als_rows(data, 4.0)
    X = torch.zeros(len(model.users), 5, dtype=torch.float64)
    _als_half_step(rows, Y, X, 0.3, steps=12)  # CG is exact after F steps (in exact arithmetic)
    X.requires_grad_()
    conf = torch.from_numpy(1 + 4.0 * w)
    dense = torch.zeros(len(model.users), len(model.items), dtype=torch.float64)  # the loss, O(U N)
    dense[data.users, data.items] = 1.0
    c = torch.ones_like(dense)
    c[data.users, data.items] = conf
    brute = (c * (dense - X @ Y.T) ** 2).sum() + 0.3 * (X.pow(2).sum() + Y.pow(2).sum())
    fast = _als_loss(rows, X.detach(), Y, 0.3)
    assert abs(float(brute.detach()) - fast) < 1e-8 * abs(fast)
    (grad,) = torch.autograd.grad(brute, X)
    assert float(grad.abs().max()) < 1e-8


def test_als_fold_in_equals_the_batched_user_solve(positives):
    model = fitted("als", positives)
    data = interactions(positives, model.users, model.items)
    cfg = model.config
    Y = model.item_factors.weight.detach().double()
    solved = torch.zeros(len(model.users), Y.shape[1], dtype=torch.float64)
    _als_half_step(_als_rows(data, cfg.alpha), Y, solved, cfg.reg, steps=3 * Y.shape[1])
    u = 4
    row = torch.from_numpy(data.items[data.indptr[u] : data.indptr[u + 1]])
    torch.testing.assert_close(model.fold_in(row).double(), solved[u], rtol=1e-4, atol=1e-5)


def test_bpr_user_bias_stays_zero(positives):
    model = fitted("bpr", positives)
    assert float(model.user_bias.weight.detach().abs().max()) == 0.0
    assert float(model.item_bias.weight.detach().abs().max()) > 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_recommend_works_and_skips_seen(kind, positives):
    model = fitted(kind, positives)
    users = positives.frame["user"].unique()[:3]
    recs = recommend(model, positives, users=users, n=5)
    assert len(recs) == 15 and set(recs["user"]) == set(users)
    seen = set(zip(positives.frame["user"], positives.frame["item"]))
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"]))


def test_implicit_models_reject_explicit_ratings_of_zero():
    data = ck.Ratings(pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [1.0, 0.0]}))
    with pytest.raises(ValueError, match="positive weight.*to_implicit"):
        build_model("als", data)
    with pytest.raises(ValueError, match="no option learning_rate"):
        build_model("ease(learning_rate=1.0)", data)


def test_popularity_count_weights_are_used():
    f = pd.DataFrame({"user": [1, 1, 1, 2, 3], "item": [10, 10, 10, 11, 11], "rating": 1.0})
    data = to_implicit(ck.Ratings(f), threshold=None, weight="count")
    model = fitted("most-popular", data)
    assert isinstance(model, MostPopular)
    np.testing.assert_array_equal(model.popularity.numpy(), [3.0, 2.0])


@pytest.mark.slow
def test_ml100k_acceptance(data_root):
    """ML-100k, rating >= 4, 20% per-user holdout: everyone beats most-popular; best learned ~ EASE."""
    data = to_implicit(ck.load_movielens("100k", data_dir=data_root, progress=False), threshold=4)
    train, test = ck.user_split(data, 0.2, seed=42)
    ndcg = {
        kind: evaluate_ranking(build_model(kind, train)[0], train, test, 10, None)["ndcg@10"]
        for kind in KINDS
    }
    for kind in ("ease", "als", "bpr"):
        assert ndcg[kind] > 1.5 * ndcg["most-popular"], ndcg
    assert max(ndcg["als"], ndcg["bpr"]) >= 0.95 * ndcg["ease"], ndcg


def test_bpr_fold_in_ranks_a_users_own_items_like_training_does(positives):
    """Folding a known user back in from their items reproduces a good ranking (AUC on them)."""
    model = fitted("bpr", positives, epochs=20)
    data = interactions(positives, model.users, model.items)
    for u in (1, 5, 9):
        row = torch.from_numpy(data.items[data.indptr[u] : data.indptr[u + 1]])
        x = model.fold_in(row.unsqueeze(0))
        assert x.shape == (1, model.user_repr(torch.tensor([u])).shape[1]) and x[0, -1] == 0
        scores = model.head(x.expand(len(model.items), -1), model.item_repr(torch.arange(len(model.items))))
        own = torch.zeros(len(model.items), dtype=torch.bool)
        own[row] = True
        auc = (scores[own].unsqueeze(1) > scores[~own].unsqueeze(0)).float().mean()
        assert auc > 0.8  # random would be 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_new_user_recommendations_from_their_items(kind, positives):
    """recommend_new_users works on every implicit model and never returns an answered item."""
    from collabkit.recommend import recommend_new_users

    model = fitted(kind, positives)
    answers = {101: 1.0, 105: 1.0, 110: 1.0}
    recs = recommend_new_users(model, answers, n=5)
    assert len(recs) == 5 and not set(recs["item"]) & set(answers)
    again = recommend_new_users(model, answers, n=5)
    assert list(recs["item"]) == list(again["item"])


def test_als_half_step_memory_does_not_grow_with_the_users():
    """Peak memory of a half-step stays flat from 20k to 80k users (the old (U, F, F) float64
    blocks: 650 MB at 80k users, 32 factors): the kernel keeps three F-vectors a thread."""
    F, n_items = 32, 2000
    rng = np.random.default_rng(0)
    Y = torch.randn(n_items, F) * 0.1
    peaks = []
    for n_users in (20_000, 80_000):
        users = np.repeat(np.arange(n_users), 10)
        items = rng.integers(0, n_items, len(users))
        frame = pd.DataFrame({"user": users, "item": items, "rating": 1.0}).drop_duplicates(["user", "item"])
        data = ck.Ratings(frame.reset_index(drop=True))
        model = ALS.from_data(data, n_factors=F)
        rows = _als_rows(interactions(data, model.users, model.items), 10.0)
        X = torch.zeros(n_users, F)
        _, peak = peak_rss(_als_half_step, rows, Y, X, 50.0)
        peaks.append(peak)
        assert X.abs().sum() > 0
    assert peaks[1] < 4 << 20, peaks  # (rows,) bounds of the work split, transient
    assert peaks[1] < peaks[0] + (4 << 20), peaks


@pytest.mark.slow
def test_als_fit_peaks_below_28_bytes_an_interaction(monkeypatch):
    """ALS.fit from a ratings frame, 3 M interactions: int32 indices and one int64 sort key build
    the CSR of both sides (about 28 bytes an interaction at the peak, 16 held through the sweeps),
    and the loss takes no float64 copy of the factor tables. The lexsort of int64 columns and
    the float64 norms peaked at 48 bytes an interaction here."""
    n, n_users, n_items = 3_000_000, 100_000, 20_000
    rng = np.random.default_rng(0)
    key = np.unique(rng.integers(0, n_users * n_items, int(n * 1.01)))[:n]
    rng.shuffle(key)
    frame = pd.DataFrame({
        "user": (key // n_items).astype(np.int32), "item": (key % n_items).astype(np.int32),
        "rating": np.ones(n, np.float32),
    })  # fmt: skip
    del key
    data = ck.Ratings(frame, scale=(0.0, 1.0))
    model = ALS.from_data(data, n_factors=32, iterations=1)
    monkeypatch.setattr("collabkit.models.base.BASELINE_CHUNK", 1 << 18)
    _, peak = peak_rss(model.fit, data)
    tables = sum(p.numel() * 4 for p in model.parameters())  # the sweeps' copies of X and Y
    assert peak < 28 * n + 2 * tables + (8 << 20), peak / n  # measured: 24 here
