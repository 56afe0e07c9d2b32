"""cross_validate(): seeded k-fold or given folds, per-fold rows and mean ± std."""

from __future__ import annotations

import numpy as np
import pytest

from collabkit.data.split import kfold
from collabkit.evaluate.crossval import canonical_folds, cross_validate
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def data():
    return make_ratings(n_users=50, n_items=30, density=0.4)


def test_one_row_per_fold_and_a_summary(data):
    cv = cross_validate("bias(epochs=2)", data, folds=3)
    assert cv.folds["fold"].tolist() == [1, 2, 3]
    metrics = cv.folds.drop(columns="fold")
    assert np.allclose(cv.summary["mean"], metrics.mean())
    assert np.allclose(cv.summary["std"], metrics.std(ddof=1))
    out = cv.to_json()
    assert out["model"] == "bias(epochs=2)" and out["n_folds"] == 3 and len(out["folds"]) == 3
    assert set(out["mean"]) == set(metrics.columns)


def test_the_mean_over_folds_has_an_interval_over_users(data):
    cv = cross_validate("bias(epochs=2)", data, folds=3)
    s = cv.summary
    per_user = ["rmse", "mae", "ndcg@10", "recall@10", "arp@10"]
    assert ((s.loc[per_user, "low"] <= s.loc[per_user, "mean"]) & (s.loc[per_user, "mean"] <= s.loc[per_user, "high"])).all()
    assert s.loc[["coverage@10", "gini@10", "fit_seconds"], "low"].isna().all()  # no per-user parts
    assert set(cv.to_json()["intervals"]) >= set(per_user)
    # the folds are resampled together: the interval of the mean is narrower than a fold's spread
    one = cross_validate("bias(epochs=2)", splits=[next(kfold(data, 3))])
    assert s.at["rmse", "high"] - s.at["rmse", "low"] < one.summary.at["rmse", "high"] - one.summary.at["rmse", "low"]


def test_seeded_and_same_as_explicit_kfold_splits(data):
    a = cross_validate("dot-bias(n_factors=4, epochs=2)", data, folds=3, seed=7)
    b = cross_validate("dot-bias(n_factors=4, epochs=2)", splits=kfold(data, 3, seed=7), seed=7)
    drop = ["fit_seconds"]
    assert a.folds.drop(columns=drop).equals(b.folds.drop(columns=drop))


def test_needs_exactly_one_of_data_or_splits(data):
    with pytest.raises(ValueError, match="exactly one"):
        cross_validate("mean")
    with pytest.raises(ValueError, match="exactly one"):
        cross_validate("mean", data, splits=kfold(data, 2))
    with pytest.raises(ValueError, match="empty"):
        cross_validate("mean", splits=[])


@pytest.mark.slow
def test_canonical_folds_partition_ml100k(data_root):
    folds = canonical_folds(data_dir=data_root)
    assert len(folds) == 5
    tests = [set(zip(te.frame.user, te.frame.item)) for _, te in folds]
    assert sum(map(len, tests)) == 100_000 and len(set().union(*tests)) == 100_000
    cv = cross_validate("mean", splits=folds)
    assert len(cv.folds) == 5 and 1.0 < cv.summary.at["rmse", "mean"] < 1.3
