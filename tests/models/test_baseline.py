"""The baseline kind: alternating sweeps descend to the regularised least-squares offsets."""

from __future__ import annotations

import numpy as np

from collabkit.models.baseline import BaselinePredictor


def ridge_offsets(model: BaselinePredictor, data, reg_item: float, reg_user: float) -> tuple[np.ndarray, np.ndarray]:
    """(b_u, b_i) minimising sum (r - mu - b_u - b_i)^2 + reg_user |b_u|^2 + reg_item |b_i|^2, solved directly."""
    f = data.frame
    u, i = model.users.lookup(f["user"]), model.items.lookup(f["item"])
    r = f["rating"].to_numpy(np.float64)
    n_u, n_i = len(model.users), len(model.items)
    X = np.zeros((len(r), n_u + n_i))
    X[np.arange(len(r)), u] = 1.0
    X[np.arange(len(r)), n_u + i] = 1.0
    penalty = np.r_[np.full(n_u, reg_user), np.full(n_i, reg_item)]
    b = np.linalg.solve(X.T @ X + np.diag(penalty), X.T @ (r - r.mean()))
    return b[:n_u], b[n_u:]


def test_sweeps_converge_to_the_least_squares_offsets(tiny):
    model = BaselinePredictor.from_data(tiny, reg_item=2.0, reg_user=3.0, sweeps=200)
    model.fit(tiny)
    b_u, b_i = ridge_offsets(model, tiny, 2.0, 3.0)
    np.testing.assert_allclose(model.baseline_user.numpy(), b_u, atol=1e-4)
    np.testing.assert_allclose(model.baseline_item.numpy(), b_i, atol=1e-4)


def test_one_sweep_is_the_one_pass_estimate_and_more_sweeps_fit_better(tiny):
    f = tiny.frame
    one = BaselinePredictor.from_data(tiny, reg_item=2.0, reg_user=3.0, sweeps=1)
    one.fit(tiny)
    u, i = one.users.lookup(f["user"]), one.items.lookup(f["item"])
    r = f["rating"].to_numpy(np.float64)
    mu = r.mean()
    b_i = np.bincount(i, r - mu, len(one.items)) / (2.0 + np.bincount(i, minlength=len(one.items)))
    b_u = np.bincount(u, r - mu - b_i[i], len(one.users)) / (3.0 + np.bincount(u, minlength=len(one.users)))
    np.testing.assert_allclose(one.baseline_item.numpy(), b_i, rtol=1e-5)
    np.testing.assert_allclose(one.baseline_user.numpy(), b_u, rtol=1e-5)

    def objective(model: BaselinePredictor) -> float:
        bu, bi = model.baseline_user.double().numpy(), model.baseline_item.double().numpy()
        return float(np.sum((r - mu - bu[u] - bi[i]) ** 2) + 3.0 * bu @ bu + 2.0 * bi @ bi)

    more = BaselinePredictor.from_data(tiny, reg_item=2.0, reg_user=3.0)  # the default sweeps
    more.fit(tiny)
    assert more.config.sweeps > 1 and objective(more) < objective(one)


def test_the_cost_rule_counts_the_sweeps():
    from collabkit.models.base import Sizes

    sizes = Sizes(100_000, 1_000, 1_000)
    (one, m1), (ten, m10) = (BaselinePredictor.cost({"sweeps": s}, sizes) for s in (1, 10))
    assert ten > one and m10 == m1
