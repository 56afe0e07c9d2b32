"""Presets: named fixed recipes that build, train, save/load and beat the mean (best on ML-100k: tests/test_ml100k.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import make_ratings

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.ensemble import Ensemble
from collabkit.train.presets import PRESETS, Member, Preset, fit_preset


def shrunk(preset: Preset) -> Preset:
    """The same recipe with tiny budgets, for generated data."""
    small = {
        "bpmf": {"samples": 10, "burn_in": 5},
        "autorec": {"n_factors": 32, "epochs": 300, "reg": 5.0, "lr": 3e-2},
    }
    return replace(
        preset,
        members=tuple(
            replace(m, config={**m.config, **small.get(m.kind, {})}) for m in preset.members
        ),
    )


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_trains_round_trips_and_beats_the_mean(name, tmp_path):
    data = make_ratings(seed=6)
    train, test = ck.random_split(data, 0.2, seed=0)
    model, history = fit_preset(shrunk(PRESETS[name]), train, valid=test)
    assert len(history.rows) == len(PRESETS[name].members) + (len(PRESETS[name].members) > 1)
    assert isinstance(model, Ensemble) == (len(PRESETS[name].members) > 1)
    rmse = ck.evaluate_ratings(model, test)["rmse"]
    assert history.final["valid_loss"] == pytest.approx(rmse**2, rel=1e-5)
    assert rmse < ck.evaluate_ratings(ck.GlobalMean.from_data(train), test)["rmse"]
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    f = test.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )


def test_custom_recipe_and_unknown_name(tiny):
    model, _ = fit_preset(
        Preset("two dots", (Member("dot-bias", {"n_factors": 3}, {"epochs": 1}),) * 2), tiny
    )
    assert model.config.weights == (1.0, 1.0) and model.config.members[1]["config"]["seed"] == 43
    with pytest.raises(ValueError, match="unknown preset 'fastest'"):
        fit_preset("fastest", tiny)
