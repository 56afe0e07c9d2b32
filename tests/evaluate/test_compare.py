"""compare(): model specs, one row per model, baselines, and the ML-100k ordering mean > bias > dot-bias."""

from __future__ import annotations

import numpy as np
import pytest

from collabkit.data.split import random_split
from collabkit.evaluate.compare import compare
from tests.conftest import make_ratings

RECIPE = "epochs=15, lr_max=0.05, wd=0.01"  # tiny data: few batches per epoch, so train harder


@pytest.fixture(scope="module")
def split():
    return random_split(make_ratings(n_users=80, n_items=50, density=0.4), 0.2, seed=1)


def test_compare_one_row_per_spec_with_baselines(split):
    train, test = split
    specs = ["mean", f"bias({RECIPE})", f"dot-bias(n_factors=8, {RECIPE})", "most-popular"]
    table = compare(specs, train, test, k=5)
    assert table["model"].tolist() == specs
    ranking = ["precision@5", "recall@5", "ndcg@5", "map@5", "hit_rate@5", "mrr@5", "coverage@5"]
    assert list(table.columns) == ["model", "rmse", "mae", *ranking, "novelty@5", "fit_seconds", "predicts_ratings"]
    assert table["predicts_ratings"].tolist() == [True, True, True, False]
    assert ((table[ranking] >= 0) & (table[ranking] <= 1)).all().all()
    assert (table["fit_seconds"] >= 0).all()
    # the mean baseline predicts the training mean for everyone: its rmse is known exactly
    mean = train.frame["rating"].mean()
    want = np.sqrt(np.mean((test.frame["rating"].to_numpy(dtype=float) - mean) ** 2))
    assert table.loc[0, "rmse"] == pytest.approx(want, rel=1e-5)
    rmse = dict(zip(table["model"], table["rmse"]))
    assert rmse[specs[2]] < rmse["mean"] and rmse[specs[1]] < rmse["mean"]
    assert np.isnan(rmse["most-popular"])  # ranking-only baseline


def test_compare_is_seeded(split):
    train, test = split
    a = compare(["dot-bias(n_factors=4, epochs=2)"], train, test).drop(columns="fit_seconds")
    b = compare(["dot-bias(n_factors=4, epochs=2)"], train, test).drop(columns="fit_seconds")
    assert a.equals(b)


def test_compare_rejects_typos_before_training(split):
    with pytest.raises(ValueError, match="unknown model"):
        compare(["mean", "dot-bais"], *split)
    with pytest.raises(ValueError, match="at least one"):
        compare([], *split)


@pytest.mark.slow
def test_ml100k_u1_dot_bias_beats_bias_beats_mean(data_root):
    from collabkit.data.movielens import canonical_split

    train, test = canonical_split("u1", data_dir=data_root)
    table = compare(["mean", "bias", "dot-bias"], train, test).set_index("model")
    assert table.at["dot-bias", "rmse"] < table.at["bias", "rmse"] < table.at["mean", "rmse"]
    assert table.at["dot-bias", "rmse"] < 0.95
