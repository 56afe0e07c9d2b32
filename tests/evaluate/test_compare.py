"""compare(): model specs, one row per model, baselines, and the ML-100k ordering mean > bias > dot-bias."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_ratings

from collabkit.data.split import random_split
from collabkit.evaluate.compare import ModelSpec, compare, fit_spec, split_specs

RECIPE = {"epochs": 15, "lr_max": 0.05, "wd": 0.01}  # tiny data: few batches per epoch, so train harder


@pytest.fixture(scope="module")
def split():
    return random_split(make_ratings(n_users=80, n_items=50, density=0.4), 0.2, seed=1)


def test_spec_parsing_separates_config_from_training_options():
    spec = ModelSpec.parse("dot-bias(n_factors=20, epochs=3, lr_max=0.01)")
    assert spec.kind == "dot-bias" and spec.config == {"n_factors": 20}
    assert spec.train == {"epochs": 3, "lr_max": 0.01}
    assert spec.name == "dot-bias(n_factors=20, epochs=3, lr_max=0.01)"
    assert ModelSpec.parse("nn(layers=[10, 5])").config == {"layers": (10, 5)}
    assert ModelSpec.parse(" bias ").name == "bias"


@pytest.mark.parametrize(
    "text", ["dot-bias(20)", "dot-bias(n_factors=)", "dot-bias(n_factors=open('x'))"]
)
def test_bad_spec_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="kind\\(name=value"):
        ModelSpec.parse(text)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match="no option n_factor;.*n_factors"):
        ModelSpec.parse("dot-bias(n_factor=20)")


def test_config_names_win_over_training_names():
    spec = ModelSpec.parse("autorec(epochs=3)")  # AutoRec's config has its own epochs
    assert spec.config == {"epochs": 3} and spec.train == {}


def test_training_overrides_for_a_model_with_its_own_fit_are_refused(split):
    with pytest.raises(ValueError, match="own fit"):
        fit_spec("most-popular(wd=0.5)", split[0])


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match="dot-bias"):
        ModelSpec.parse("svd")


def test_split_specs_keeps_commas_inside_brackets():
    assert split_specs("mean, nn(layers=(10, 5)),bias,") == ["mean", "nn(layers=(10, 5))", "bias"]


def test_fit_spec_applies_config_overrides(split):
    model, seconds = fit_spec("dot-bias(n_factors=7, epochs=1)", split[0])
    assert model.config.n_factors == 7 and model.item_factors.weight.shape[1] == 7
    assert seconds >= 0


def test_compare_one_row_per_spec_with_baselines(split):
    train, test = split
    specs = ["mean", "bias", "dot-bias(n_factors=8)", "most-popular"]
    table = compare(specs, train, test, k=5, **RECIPE)
    assert table["model"].tolist() == specs
    ranking = ["precision@5", "recall@5", "ndcg@5", "map@5", "hit_rate@5", "mrr@5", "coverage@5"]
    assert list(table.columns) == ["model", "rmse", "mae", *ranking, "novelty@5", "fit_seconds"]
    assert ((table[ranking] >= 0) & (table[ranking] <= 1)).all().all()
    assert (table["fit_seconds"] >= 0).all()
    # the mean baseline predicts the training mean for everyone: its rmse is known exactly
    mean = train.frame["rating"].mean()
    want = np.sqrt(np.mean((test.frame["rating"].to_numpy(dtype=float) - mean) ** 2))
    assert table.loc[0, "rmse"] == pytest.approx(want, rel=1e-5)
    rmse = dict(zip(table["model"], table["rmse"]))
    assert rmse["dot-bias(n_factors=8)"] < rmse["mean"] and rmse["bias"] < rmse["mean"]
    assert np.isnan(rmse["most-popular"])  # ranking-only baseline


def test_compare_is_seeded(split):
    train, test = split
    a = compare(["dot-bias(n_factors=4)"], train, test, epochs=2).drop(columns="fit_seconds")
    b = compare(["dot-bias(n_factors=4)"], train, test, epochs=2).drop(columns="fit_seconds")
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
