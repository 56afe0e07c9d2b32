"""Fold-in: recovers a known user, shrinks to the prior, batches, and refuses non-linear heads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.models.base import get_model_class
from collabkit.models.linear import (
    DEFAULT_NOISE,
    NOISE_GRID,
    UserPrior,
    _ridge,
    average_taste,
    squash,
)
from collabkit.models.linear import map_fold_in as fold_in
from collabkit.recommend import fold_in_frame
from collabkit.recommend.foldin import pad_answers
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def setup():
    data = make_ratings(n_users=80, n_items=50, density=0.4)
    model = ck.DotProductBias.from_data(data, n_factors=4, seed=0)
    ck.fit_one_cycle(model, data, epochs=20, lr_max=1e-2, wd=0.01, bs=32, progress=False)
    return data, model, model.user_prior(data)


def planted_model(
    n_items: int = 60, dim: int = 3, seed: int = 0
) -> tuple[ck.DotProductBias, torch.Tensor]:
    """A dot-bias model with random item factors/biases, and a true user [factors, bias] to find."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"user": [0, 1] * n_items, "item": np.repeat(np.arange(n_items), 2), "rating": 3.0}
    )
    model = ck.DotProductBias.from_data(ck.Ratings(frame, scale=(1, 5)), n_factors=dim)
    with torch.no_grad():
        model.item_factors.weight.copy_(torch.from_numpy(rng.normal(0, 1, (n_items, dim))))
        model.item_bias.weight.copy_(torch.from_numpy(rng.normal(0, 0.3, (n_items, 1))))
        model.user_factors.weight.copy_(torch.from_numpy(rng.normal(0, 1, (2, dim))))
    return model, torch.tensor([0.8, -0.5, 0.3, 0.2], dtype=torch.float64)


def predict(model, x: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    A, c = model.user_linear(items)
    return squash(A @ x + c, model.config.y_range)[0]


def test_recovers_a_planted_user_from_noiseless_answers():
    model, truth = planted_model()
    items = torch.arange(40)
    ratings = predict(model, truth, items)
    weak = UserPrior(
        torch.zeros(4, dtype=torch.float64), torch.full((4,), 1e-6, dtype=torch.float64)
    )
    x = fold_in(model, items, ratings, weak, steps=20)
    torch.testing.assert_close(x, truth, atol=1e-4, rtol=0)
    ridge = fold_in(model, items, ratings, weak, method="logit-ridge")
    torch.testing.assert_close(
        ridge, truth, atol=1e-4, rtol=0
    )  # exact targets: the linearisation is exact too


def test_gauss_newton_reaches_a_stationary_point_better_than_the_ridge_start(setup):
    _, model, prior = setup
    items = torch.tensor([0, 5, 9, 14, 20, 33])
    ratings = torch.tensor([5.0, 1.0, 4.0, 2.0, 5.0, 1.0], dtype=torch.float64)

    def objective(x):
        f = predict(model, x, items)
        return ((ratings - f) ** 2).sum() + (prior.precision * (x - prior.mean) ** 2).sum()

    gn = fold_in(model, items, ratings, prior, steps=10)
    ridge = fold_in(model, items, ratings, prior, method="logit-ridge")
    assert objective(gn) < objective(ridge)
    x = gn.clone().requires_grad_(True)
    objective(x).backward()
    assert x.grad.norm() < 1e-5


def test_no_answers_gives_the_average_taste_user(setup):
    _, model, prior = setup
    x = fold_in(
        model, torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.float64), prior
    )
    torch.testing.assert_close(x, prior.mean)
    assert prior.average_user in model.users
    idx = model.users.lookup([prior.average_user])[0]
    torch.testing.assert_close(
        prior.mean, model.user_repr(torch.tensor([idx]))[0].double().detach()
    )


def test_average_taste_is_the_user_nearest_the_mean_prediction(setup):
    data, model, _ = setup
    scores = model.score_all_items(torch.arange(len(model.users))).double()
    dist = ((scores - scores.mean(0)) ** 2).mean(1)
    assert average_taste(model) == int(dist.argmin())
    counts = data.frame["user"].value_counts().reindex(model.users.ids).to_numpy()
    chosen = average_taste(model, counts)
    assert counts[chosen] >= np.median(counts)


def test_batched_equals_one_at_a_time(setup):
    data, model, prior = setup
    prior = model.user_prior(noise_var=0.3)
    answers = data.frame[data.frame["user"].isin([1, 2, 3])].groupby("user").head(4)
    answers = answers[
        (answers["user"] != 3) | (answers.groupby("user").cumcount() == 0)
    ]  # user 3: one answer
    users, batch = fold_in_frame(model, answers, prior)
    for k, u in enumerate(users):
        own = answers[answers["user"] == u]
        one = fold_in(
            model,
            torch.from_numpy(model.items.lookup(own["item"])),
            torch.tensor(own["rating"].to_numpy(np.float64)),
            prior,
        )
        torch.testing.assert_close(batch[k], one)


def test_folding_in_a_known_user_lands_near_what_training_learned(setup):
    data, model, prior = setup
    users, reprs = fold_in_frame(model, data.frame, prior)
    trained = model.user_repr(torch.from_numpy(model.users.lookup(users))).double().detach()
    all_items = torch.arange(len(model.items))
    A, c = model.user_linear(all_items)
    folded, learned = A @ reprs.T + c.unsqueeze(1), A @ trained.T + c.unsqueeze(1)  # (N, U) logits
    assert np.corrcoef(folded.ravel(), learned.ravel())[0, 1] > 0.9


def test_noise_is_calibrated_or_defaults(setup):
    _, model, prior = setup
    width2 = 16.0
    frac = prior.noise_var / width2
    assert min(abs(frac - g) for g in NOISE_GRID) < 1e-9
    assert model.user_prior().noise_var == pytest.approx(DEFAULT_NOISE * width2)
    assert model.user_prior(noise_var=0.5).noise_var == 0.5


def test_stronger_prior_shrinks_towards_the_centre(setup):
    _, model, _ = setup
    items, ratings = torch.tensor([1, 2, 3]), torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64)
    dist = [
        float(
            (
                fold_in(model, items, ratings, model.user_prior(noise_var=v))
                - model.user_prior().mean
            ).norm()
        )
        for v in (0.01, 0.3, 10.0)
    ]
    assert dist[0] > dist[1] > dist[2]


def test_hybrid_and_plain_dot_fold_in_too(setup):
    data, _, _ = setup
    for kind in ("dot", "hybrid", "bias"):
        model = get_model_class(kind).from_data(data, seed=0)
        ck.fit_one_cycle(model, data, epochs=2, progress=False)
        users, reprs = fold_in_frame(model, data.frame.head(30), model.user_prior())
        assert reprs.shape == (len(users), model.user_repr(torch.tensor([0])).shape[1])
        assert torch.isfinite(reprs).all()


def test_few_answers_solve_the_dual_with_the_same_answer():
    """Fewer answers than dimensions (wide models) take the m x m Woodbury path: same minimiser."""
    g = torch.Generator().manual_seed(0)
    U, m, D = 4, 5, 12
    A = torch.randn(U, m, D, generator=g, dtype=torch.float64)
    A[1, 3:] = 0  # a user with padding rows
    weight = torch.rand(U, m, generator=g, dtype=torch.float64) + 0.1
    weight[1, 3:] = 0
    target = torch.randn(U, m, generator=g, dtype=torch.float64) * (weight > 0)
    lam = torch.rand(D, generator=g, dtype=torch.float64) + 0.5
    mu = torch.randn(U, D, generator=g, dtype=torch.float64)
    H = (A * weight.unsqueeze(-1)).mT @ A + torch.diag(lam)
    primal = torch.linalg.solve(H, (A.mT @ (weight * target).unsqueeze(-1)).squeeze(-1) + lam * mu)
    torch.testing.assert_close(_ridge(A, target, weight, lam, mu), primal)


@pytest.mark.slow
def test_autorec_bpmf_and_their_ensemble_fold_in(setup):
    """Identity-link models fold in exactly; an ensemble folds the answers into every member."""
    from collabkit.models.ensemble import Ensemble
    from collabkit.train.build import build_model

    data, _, _ = setup
    small = ("bpmf(samples=10, burn_in=5)", "autorec(n_factors=16, epochs=50)")
    ens = Ensemble.of([build_model(s, data)[0] for s in small], [0.5, 0.5])
    answers = data.frame[data.frame["user"] == data.frame["user"].iloc[0]].assign(user="new")
    prior = ens.user_prior(data)
    _, reprs = fold_in_frame(ens, answers, prior)
    parts = [
        fold_in_frame(m, answers, m.user_prior(data))[1] for m in ens.members
    ]  # the same answers, member by member
    torch.testing.assert_close(reprs, torch.cat(parts, -1))
    assert reprs.shape == (1, ens.user_repr(torch.zeros(1, dtype=torch.int64)).shape[1]) and torch.isfinite(reprs).all()
    # with its own ratings as answers, the folded-in user predicts them better than the fallback
    items = torch.from_numpy(ens.items.lookup(answers["item"]))
    truth = torch.tensor(answers["rating"].to_numpy())
    ens.eval()
    with torch.no_grad():
        ir = ens.item_repr(items)
        err = [
            float((ens.head(x.float().expand(len(items), -1), ir) - truth).pow(2).mean())
            for x in (reprs, prior.mean.unsqueeze(0))
        ]
    assert err[0] < err[1]
    with pytest.raises(TypeError, match="not linear"):
        ens.user_linear(items)


def test_non_linear_heads_are_refused(setup):
    data, _, _ = setup
    nn = ck.EmbeddingNN.from_data(data)
    with pytest.raises(TypeError, match="'nn' model has no 'fold-in' capability; kinds that do:"):
        nn.user_prior()


def test_answers_about_unknown_items_are_an_error(setup):
    _, model, _ = setup
    with pytest.raises(ck.UnknownIdError, match="unknown item id"):
        pad_answers(model, pd.DataFrame({"user": [1], "item": [424242], "rating": [3.0]}))
