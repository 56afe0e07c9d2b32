"""The bootstrap interval and the paired test, checked against scipy on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from collabkit.evaluate.uncertainty import PerUser, intervals, paired, resample_weights

B = 2000


def scipy_interval(data, statistic, seed, paired_data=False):
    res = stats.bootstrap(
        data, statistic, n_resamples=B, method="percentile", paired=paired_data,
        vectorized=True, rng=np.random.default_rng(seed),
    )  # fmt: skip
    return res.confidence_interval.low, res.confidence_interval.high


def test_interval_of_a_mean_over_users_is_scipys_percentile_bootstrap():
    x = np.random.default_rng(1).gamma(2.0, 0.1, 300)  # skewed, like ndcg per user
    ours = intervals({"m": PerUser(x, np.ones_like(x))}, B, 0.95, seed=7)["m"]
    want = scipy_interval((x,), lambda s, axis: s.mean(axis=axis), seed=7)
    assert ours == pytest.approx(want, rel=1e-12)
    # the same draws in chunks as in one call (a chunk is at most CHUNK_CELLS cells)
    chunked = np.concatenate(list(resample_weights(300, B, seed=7)))
    draws = np.random.default_rng(7).integers(0, 300, (B, 300))
    assert np.array_equal(chunked, np.stack([np.bincount(d, minlength=300) for d in draws]))


def test_interval_of_rmse_is_scipys_over_users_with_their_rating_counts():
    rng = np.random.default_rng(2)
    n = rng.integers(1, 40, 200)  # ratings per user
    sse = np.array([(rng.normal(0, 1 + u % 3, k) ** 2).sum() for u, k in enumerate(n)])
    metric = PerUser(sse, n, root=True)
    assert metric.value() == pytest.approx(np.sqrt(sse.sum() / n.sum()))
    ours = intervals({"rmse": metric}, B, 0.9, seed=3)["rmse"]
    res = stats.bootstrap(
        (sse, n), lambda s, k, axis: np.sqrt(s.sum(axis=axis) / k.sum(axis=axis)), n_resamples=B,
        method="percentile", paired=True, vectorized=True, confidence_level=0.9,
        rng=np.random.default_rng(3),
    )  # fmt: skip
    assert ours == pytest.approx(tuple(res.confidence_interval), rel=1e-12)


def test_paired_difference_interval_is_scipys_and_p_agrees_with_the_paired_t_test():
    rng = np.random.default_rng(4)
    base = rng.random(400)
    a = base + rng.normal(0.15, 1.0, 400)  # a small real improvement, noisy per user
    one = np.ones(400)
    d = paired({"m": PerUser(a, one)}, {"m": PerUser(base, one)}, B, seed=5)["m"]
    assert d.diff == pytest.approx(a.mean() - base.mean())
    want = scipy_interval((a, base), lambda x, y, axis: x.mean(axis) - y.mean(axis), 5, True)
    assert (d.low, d.high) == pytest.approx(want, rel=1e-12)
    t = stats.ttest_rel(a, base)
    assert 0.01 < t.pvalue < 0.1  # the case is near the edge, where the two must agree
    assert d.p == pytest.approx(t.pvalue, abs=0.01)
    assert d.significant == (t.pvalue < 0.05) == (d.low > 0)


def test_paired_test_of_identical_and_of_very_different_models():
    x = np.random.default_rng(6).random(100)
    one = np.ones(100)
    same = paired({"m": PerUser(x, one)}, {"m": PerUser(x.copy(), one)}, 500)["m"]
    assert same.diff == 0 and same.p == 1.0 and not same.significant
    far = paired({"m": PerUser(x + 1, one)}, {"m": PerUser(x, one)}, 500)["m"]
    assert far.p == pytest.approx(2 / 501) and far.significant and far.low == pytest.approx(1.0)


def test_users_a_metric_does_not_score_and_folds():
    # users 0..3; user 3 has no relevant item (den 0): the mean is over 3 users
    metric = PerUser(np.array([1.0, 0.0, 0.5, 0.0]), np.array([1, 1, 1, 0]))
    assert metric.value() == pytest.approx(0.5) and metric.n_users == 3
    assert metric.where(np.array([True, False, False, True])).value() == pytest.approx(1.0)
    # two folds: fold values 1/2 and 3/1 -> their mean 1.75
    folds = PerUser(np.array([[1.0, 0.0], [0.0, 3.0]]), np.array([[1, 1], [0, 1]]))
    assert folds.value() == pytest.approx(1.75)
    assert np.isnan(intervals({"f": folds}, 200)["f"]).all()  # 2 users: too few for an interval
    rng = np.random.default_rng(0)
    many = PerUser(rng.random((3, 50)), (rng.random((3, 50)) < 0.8).astype(float))
    low, high = intervals({"f": many}, 500)["f"]
    assert low < many.value() < high
    with pytest.raises(ValueError, match="same users"):
        paired({"m": metric}, {"m": PerUser(np.ones(2), np.ones(2))})
