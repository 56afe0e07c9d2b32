"""The self-tuning preset: search on the training data only, within a budget, NNLS blend, refit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.base import CollabModel
from collabkit.models.ensemble import Ensemble
from collabkit.train.auto import Sizes, build_auto, fit_size, nnls
from collabkit.train.build import ModelSpec, build_model

FAST = ("bias", "dot-bias(n_factors=4, epochs=3)", "ordinal(n_factors=4, epochs=3)")


def pairs(frame) -> set:
    return set(zip(frame["user"], frame["item"]))


def test_auto_reads_nothing_but_the_training_data_it_is_given(tiny, monkeypatch):
    train, test = ck.random_split(tiny, 0.3, seed=1)
    seen: list[set] = []
    fit, predict = CollabModel.fit, CollabModel.predict
    monkeypatch.setattr(CollabModel, "fit", lambda self, data, *a, **k: seen.append(pairs(data.frame)) or fit(self, data, *a, **k))
    monkeypatch.setattr(CollabModel, "predict", lambda self, u, i, *a: seen.append(set(zip(u, i))) or predict(self, u, i, *a))
    model, _ = build_auto(train, candidates=FAST, budget=60)
    known = pairs(train.frame)
    assert seen and all(s <= known for s in seen)  # fits and validation predictions: train rows only
    info = model.meta["auto"]
    assert info["n_fit"] + info["n_valid"] == len(train)
    assert not pairs(test.frame) & set().union(*seen)


def test_auto_respects_its_budget_and_says_what_it_skipped(tiny):
    slow = "autorec(n_factors=50, epochs=10000000)"
    model, history = build_auto(tiny, candidates=(*FAST, slow), budget=5)
    info = model.meta["auto"]
    assert history.fit_seconds < 5 * 1.5
    skipped = [c for c in info["candidates"] if c["spec"].startswith("autorec")]
    assert skipped and "estimated" in skipped[0]["status"]
    assert all(c["weight"] > 0 for c in info["chosen"])
    assert ck.evaluate_ratings(model, tiny)["rmse"] < float(tiny.frame["rating"].std(ddof=0))


def test_auto_is_a_spec_of_the_one_builder_and_its_choices_are_saved(tiny, tmp_path):
    spec = ModelSpec.parse("auto(budget=20)")
    assert spec.is_preset and spec.config == {"budget": 20}
    with pytest.raises(ValueError, match="only seed and budget"):
        ModelSpec.parse("auto(epochs=3)")
    model, _ = build_model("auto(budget=20)", tiny)
    save_model(model, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["meta"]["auto"]
    assert saved["chosen"] and saved["candidates"] and saved["budget_seconds"] == 20
    f = tiny.frame
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"]))


def test_an_ensemble_with_an_ordinal_member_saves_and_loads(tiny, tmp_path):
    members = [build_model(s, tiny)[0] for s in ("ordinal(n_factors=3, epochs=2)", "dot-bias(n_factors=3, epochs=2)")]
    model = Ensemble.of(members, [0.6, 0.4])
    save_model(model, tmp_path / "e")
    f = tiny.frame
    again = load_model(tmp_path / "e")
    np.testing.assert_array_equal(model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"]))


def test_nnls_is_exact_on_small_problems():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(200, 3))
    y = P @ np.array([0.3, 0.7, 0.0]) - 0.5 * P[:, 2]  # the best free weight of column 3 is < 0
    w = nnls(P, y)
    assert w[2] == 0 and (w >= 0).all()
    free = np.linalg.lstsq(P[:, :2], y, rcond=None)[0]
    np.testing.assert_allclose(w[:2], free, atol=1e-9)


def test_the_size_rule_skips_or_shrinks_members_that_cannot_scale():
    big = Sizes(n=700_000, users=22_000, items=290_000)
    cfg, why = fit_size("autorec", {"n_factors": 500, "epochs": 300}, big)
    assert cfg is None and "dense items x users" in why
    cfg, why = fit_size("bpmf", {"n_factors": 10, "samples": 130, "burn_in": 20}, big)
    assert cfg is None or cfg["samples"] < 130 and "samples" in why
    assert fit_size("dot-bias", {"n_factors": 50}, big) == ({"n_factors": 50}, "")


def test_cli_train_preset_auto_with_a_budget(tmp_path):
    from conftest import make_ratings
    from typer.testing import CliRunner

    from collabkit.cli import app

    path = tmp_path / "r.csv"
    make_ratings().frame.to_csv(path, index=False)
    runner = CliRunner()
    args = ["train", "--ratings", str(path), "--preset", "auto", "--budget", "4", "--json", "--no-progress"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1])["model"] == "auto(budget=4.0)"
    wrong = runner.invoke(app, ["train", "--ratings", str(path), "--budget", "4"])
    assert wrong.exit_code == 2 and "--budget only applies" in wrong.output


def test_the_baseline_kind_is_the_models_own_fallback(tiny, tmp_path):
    model, _ = build_model("baseline(reg_item=5.0, reg_user=5.0)", tiny)
    f = tiny.frame.head(50)
    expected = model.baseline(torch.from_numpy(model.users.lookup(f["user"])), torch.from_numpy(model.items.lookup(f["item"])))
    np.testing.assert_allclose(model.predict(f["user"], f["item"]), expected.numpy(), rtol=1e-6)
    u = torch.tensor([0, 3])
    pairs = model.predict_idx(u.repeat_interleave(len(model.items)), torch.arange(len(model.items)).repeat(2))
    torch.testing.assert_close(model.score_all_items(u), pairs.view(2, -1))
    save_model(model, tmp_path / "b")
    np.testing.assert_array_equal(load_model(tmp_path / "b").predict(f["user"], f["item"]), model.predict(f["user"], f["item"]))
    assert ck.evaluate_ratings(model, tiny)["rmse"] < float(tiny.frame["rating"].std(ddof=0))
