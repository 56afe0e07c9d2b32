"""The one builder: specs, presets, recipes kept in the config, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.ensemble import Ensemble
from collabkit.train.build import ModelSpec, build_model, split_specs
from collabkit.train.presets import PRESETS, Preset
from tests.conftest import make_ratings


def test_spec_parsing_puts_every_option_in_the_config():
    spec = ModelSpec.parse("dot-bias(n_factors=20, epochs=3, lr_max=0.01)")
    assert spec.kind == "dot-bias"
    assert spec.config == {"n_factors": 20, "epochs": 3, "lr_max": 0.01}
    assert spec.name == "dot-bias(n_factors=20, epochs=3, lr_max=0.01)"
    assert ModelSpec.parse("nn(layers=[10, 5])").config == {"layers": (10, 5)}
    assert ModelSpec.parse(" bias ").name == "bias"
    assert ModelSpec.parse("best").is_preset and not ModelSpec.parse("autorec").is_preset


@pytest.mark.parametrize(
    "text", ["dot-bias(20)", "dot-bias(n_factors=)", "dot-bias(n_factors=open('x'))"]
)
def test_bad_spec_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="kind\\(name=value"):
        ModelSpec.parse(text)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match="no option n_factor;.*n_factors"):
        ModelSpec.parse("dot-bias(n_factor=20)")
    with pytest.raises(ValueError, match="no option wd"):  # most-popular has no SGD recipe
        ModelSpec.parse("most-popular(wd=0.5)")
    with pytest.raises(ValueError, match="preset.*takes no options"):
        ModelSpec.parse("best(n_factors=3)")


def test_unknown_kind_lists_kinds_and_presets():
    with pytest.raises(ValueError, match="dot-bias.*presets: best"):
        ModelSpec.parse("svd")


def test_split_specs_keeps_commas_inside_brackets():
    assert split_specs("mean, nn(layers=(10, 5)),bias,") == ["mean", "nn(layers=(10, 5))", "bias"]


def test_the_recipe_is_saved_with_the_model(tiny, tmp_path):
    model, history = build_model("dot-bias(n_factors=7, epochs=2, lr_max=0.02)", tiny)
    assert model.config.n_factors == 7 and model.item_factors.weight.shape[1] == 7
    assert len(history.rows) == 2 and history.fit_seconds > 0
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m").config
    assert (again.epochs, again.lr_max, again.wd) == (2, 0.02, 0.1)
    bpr, _ = build_model("bpr(epochs=1, n_negatives=2, sampler='popularity')", tiny, threshold=4)
    save_model(bpr, tmp_path / "b")
    cfg = load_model(tmp_path / "b").config
    assert (cfg.n_negatives, cfg.sampler, cfg.epochs) == (2, "popularity", 1)


def test_fit_overrides_go_into_the_config(tiny):
    model = ck.DotProductBias.from_data(tiny, n_factors=3)
    model.fit(tiny, epochs=1, wd=0.5)
    assert model.config.epochs == 1 and model.config.wd == 0.5
    with pytest.raises(ValueError, match="unknown option.*learning_rate"):
        model.fit(tiny, learning_rate=1.0)


def test_ranking_kinds_get_positives_from_a_threshold(tiny):
    model, _ = build_model("most-popular", tiny, threshold=4.0)
    liked = tiny.frame[tiny.frame["rating"] >= 4]["item"].value_counts()
    top = model.items.decode(model.popularity.argsort(descending=True)[:3].numpy())
    assert list(top) == list(liked.index[:3]) or set(top) <= set(liked.index[:6])


SMALL = {  # the presets' members with tiny budgets, for generated data
    "bpmf": "bpmf(n_factors=5, samples=10, burn_in=5)",
    "autorec": "autorec(n_factors=32, epochs=300, reg=5.0, lr=3e-2)",
}


def shrunk(preset: Preset) -> Preset:
    members = tuple(SMALL.get(m.split("(")[0], m) for m in preset.members)
    return Preset(preset.description, members, preset.weights, preset.times)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "best" else n for n in sorted(PRESETS)]
)
def test_preset_trains_round_trips_and_beats_the_mean(name, tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, name, shrunk(PRESETS[name]))
    data = make_ratings(seed=6)
    train, test = ck.random_split(data, 0.2, seed=0)
    model, history = build_model(name, train, valid=test)
    n = len(PRESETS[name].members)
    assert isinstance(model, Ensemble) == (n > 1)
    if n > 1:  # every member's epochs (or sweeps), each row naming its member
        assert len({row["member"] for row in history.rows}) == n
    else:
        assert len(history.rows) == model.config.epochs
    rmse = ck.evaluate_ratings(model, test)["rmse"]
    assert rmse < ck.evaluate_ratings(build_model("mean", train)[0], test)["rmse"]
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    f = test.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )
    if n > 1:
        assert [m["config"]["seed"] for m in model.config.members] == [42 + k for k in range(n)]
