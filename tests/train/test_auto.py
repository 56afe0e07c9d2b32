"""The self-tuning preset: search on the training data only, within its time and memory budgets,
a support-aware blend, refit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.base import CollabModel, registry
from collabkit.models.ensemble import Ensemble
from collabkit.train.auto import (
    MIN_FALLBACK_PAIRS,
    Sizes,
    _fallback,
    build_auto,
    fit_size,
    resident_bytes,
)
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
    assert history.fit_seconds < 5 * 1.5  # the refit included
    skipped = [c for c in info["candidates"] if c["spec"].startswith("autorec")]
    assert skipped and "estimated" in skipped[0]["status"] and "refit" in skipped[0]["status"]
    assert all(c["weight"] > 0 for c in info["chosen"])
    assert ck.evaluate_ratings(model, tiny)["rmse"] < float(tiny.frame["rating"].std(ddof=0))
    fitted = [c for c in info["candidates"] if "valid_rmse" in c]
    assert all({"seconds", "estimated_seconds", "mb", "status"} <= set(c) for c in fitted)


def test_auto_keeps_its_memory_limit_and_says_what_did_not_fit(tiny):
    huge = "autorec(n_factors=20000, epochs=2)"  # a 20000-wide code on 60 users: ~40 MB with Adam's state
    limit_gb = (resident_bytes() + 30e6) / 1e9  # what the process holds now, and 30 MB more
    model, _ = build_auto(tiny, candidates=(*FAST, huge), budget=60, memory=limit_gb)
    row = next(c for c in model.meta["auto"]["candidates"] if c["spec"].startswith("autorec"))
    assert row["status"].startswith("skipped") and "GB" in row["status"]
    assert model.meta["auto"]["memory_gb"] == pytest.approx(limit_gb)
    with pytest.raises(ValueError, match="memory"):
        build_auto(tiny, candidates=FAST, memory=0.0)


def test_auto_blends_by_support_and_keeps_what_it_measured(tiny):
    model, _ = build_auto(tiny, candidates=FAST, budget=60)
    info = model.meta["auto"]
    # the form it uses is the one that errs least out of fold (on ~80 validation rows: not the cells)
    out_of_fold = {"cells": info["blend_oof_rmse"], "constant": info["constant_blend_oof_rmse"], "single": info["single_rmse"]}
    assert all(v > 0 for v in out_of_fold.values())
    assert out_of_fold[info["blend_form"]] == min(out_of_fold.values()) and info["support"]["form"] == info["blend_form"]
    buckets = info["support"]["buckets"]
    assert {b["side"] for b in buckets} == {"user", "item"}
    assert model.config.support_edges and np.asarray(model.config.cell_weights).min() >= 0
    if info["blend_form"] != "cells":  # every cell holds the same weights
        cells = np.asarray(model.config.cell_weights)
        np.testing.assert_allclose(cells, np.broadcast_to(cells[0, 0], cells.shape))


def test_auto_is_a_spec_of_the_one_builder_and_its_choices_are_saved(tiny, tmp_path):
    spec = ModelSpec.parse("auto(budget=20)")
    assert spec.is_preset and spec.config == {"budget": 20}
    with pytest.raises(ValueError, match="only seed, budget"):
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


def test_the_size_rule_skips_or_shrinks_members_that_cannot_scale():
    big = Sizes(n=700_000, users=22_000, items=290_000)
    cfg, why = fit_size("autorec", {"n_factors": 500, "epochs": 300}, big, 0.9e9)
    assert cfg is None and "dense items x users" in why
    cfg, why = fit_size("bpmf", {"n_factors": 10, "samples": 130, "burn_in": 20}, big, 0.9e9)
    assert cfg["n_factors"] < 10 and 30 <= cfg["samples"] < 130 and "factors" in why and "samples" in why
    assert get_cost("bpmf", cfg, big)[1] <= 0.9e9
    assert fit_size("dot-bias", {"n_factors": 50}, big, 0.9e9) == ({"n_factors": 50}, "")
    cfg, why = fit_size("dot-bias", {"n_factors": 50}, big, 0.1e9)
    assert cfg is None and "GB" in why


def get_cost(kind, cfg, sizes):
    return registry()[kind].cost(cfg, sizes)


@pytest.mark.parametrize("kind", sorted(registry()))
def test_every_kind_estimates_its_time_and_memory(kind):
    """Every kind's cost rule answers for its defaults, growing with the data (the ensemble: its members')."""
    small, big = Sizes(10_000, 100, 100), Sizes(1_000_000, 10_000, 10_000)
    cfg = {"members": ({"kind": "baseline", "config": {}}, {"kind": "dot-bias", "config": {}})} if kind == "ensemble" else {}
    (w1, m1), (w2, m2) = get_cost(kind, cfg, small), get_cost(kind, cfg, big)
    assert 0 < w1 < w2 and 0 < m1 < m2


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
    wrong = runner.invoke(app, ["train", "--ratings", str(path), "--memory", "1"])
    assert wrong.exit_code == 2 and "--memory only applies" in wrong.output


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


def test_unknown_ids_get_the_baseline_that_erred_least_on_them_in_validation(tiny, tmp_path):
    """Pairs with an unknown side are the baseline's alone: auto picks its shrinkage on the
    validation pairs of that kind, not the first member's."""
    f = tiny.frame
    users = f["user"].unique()
    once = pd.DataFrame({"user": np.resize(users, 2000), "item": np.arange(2000) + 10_000, "rating": 5.0})
    data = tiny.with_frame(pd.concat([f[["user", "item", "rating"]], once], ignore_index=True))  # 2000 items rated once
    candidates = ("baseline(reg_item=0.5, reg_user=1000.0)", "baseline(reg_item=0.5, reg_user=0.5)", *FAST[1:])
    model, _ = build_auto(data, candidates=candidates, budget=60)
    info = model.meta["auto"]
    assert info["fallback"]["spec"] == "baseline(reg_item=0.5, reg_user=0.5)"  # users who give new items 5s
    assert info["fallback"]["pairs"] >= MIN_FALLBACK_PAIRS
    chosen = build_model(info["fallback"]["spec"], data)[0]
    np.testing.assert_allclose(model.baseline_user.numpy(), chosen.baseline_user.numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.predict(users[:5], ["new"] * 5), chosen.predict(users[:5], ["new"] * 5), rtol=1e-6)
    save_model(model, tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").predict(users[:5], ["new"] * 5), model.predict(users[:5], ["new"] * 5))


def test_few_unknown_side_pairs_choose_the_fallback_on_every_pair():
    """Below MIN_FALLBACK_PAIRS the unknown-side pairs are too few to tell baselines apart."""
    y = np.r_[np.full(10, 5.0), np.full(500, 3.0)]
    counts = (np.r_[np.zeros(10), np.ones(500)], np.ones(510))  # 10 pairs with an unknown user
    preds = [np.r_[np.full(10, 5.0), np.full(500, 3.5)], np.r_[np.full(10, 4.0), np.full(500, 3.0)]]
    fitted = [{"spec": "baseline(reg_user=1.0)"}, {"spec": "baseline(reg_user=9.0)"}]
    assert _fallback(fitted, preds, y, counts) == (1, pytest.approx(np.sqrt(10 / 510)), 510)
    many = (np.r_[np.zeros(200), np.ones(310)], np.ones(510))
    assert _fallback(fitted, preds, np.r_[np.full(200, 5.0), np.full(310, 3.0)], many)[0] == 0


def test_on_a_continuous_scale_holding_zeros_auto_skips_the_ordinal_model_and_says_why(tiny):
    """Jester-like ratings (-10..10, two decimals, 0 among them): the ordinal model, which needs a
    few rating levels, is skipped with the reason instead of stopping the run; AutoRec fits."""
    rng = np.random.default_rng(0)
    f = tiny.frame.assign(rating=((tiny.frame["rating"] - 3) * 4 + rng.normal(0, 1, len(tiny))).clip(-10, 10).round(2))
    f.loc[f.index[:5], "rating"] = 0.0
    data = ck.Ratings(f, name="jester-like")
    model, _ = build_auto(data, candidates=(*FAST, "autorec(n_factors=8, epochs=5)"), budget=60)
    rows = {c["spec"].split("(")[0]: c for c in model.meta["auto"]["candidates"]}
    assert rows["ordinal"]["status"].startswith("skipped") and "distinct rating values" in rows["ordinal"]["status"]
    assert "valid_rmse" in rows["autorec"] and "valid_rmse" in rows["bias"]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no mean of an empty validation part
def test_too_few_ratings_to_validate_on_leave_the_baseline_alone(tiny):
    few = tiny.subset(np.arange(len(tiny.frame)) < 5)  # a validation tenth of 5 ratings is empty
    model, _ = build_auto(few, candidates=("baseline", *FAST), budget=60)
    meta = model.meta["auto"]
    assert meta["n_valid"] == 0 and [m["spec"] for m in meta["chosen"]] == ["baseline"]
    assert "nothing beat the baseline member baseline by one standard error on the 0" in meta["blend_note"]
    assert model.meta["representation"].startswith("member 1 of 1, baseline")


def rated_in_sessions(shift_sd: float, seed: int = 0, session_seconds: int = 80_000, gap: int = 86_400) -> ck.Ratings:
    """Ratings of a low-rank taste plus biases, each user rating in three sessions ``gap`` seconds
    apart (by default on three days), each session's ratings within ``session_seconds`` and moved
    by the user's mood then (``shift_sd``): the effect time offsets model."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 150, 80
    U, V = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    u, i = np.nonzero(rng.random((n_users, n_items)) < 0.3)
    session = rng.integers(0, 3, len(u))
    mood = rng.normal(0, shift_sd, (n_users, 3))
    score = 3 + 0.6 * (U[u] * V[i]).sum(1) + mood[u, session] + rng.normal(0, 0.3, len(u))
    start = 10**9 + 86_400 * 7 * u + gap * session
    frame = pd.DataFrame({"user": u, "item": i, "rating": np.clip(np.round(score), 1, 5).astype(np.float32),
                          "timestamp": start + rng.integers(0, session_seconds, len(u))})  # fmt: skip
    return ck.Ratings(frame, scale=(1.0, 5.0), name="sessions")


def test_auto_adds_time_offsets_where_users_moods_move_a_days_ratings():
    train, test = ck.random_split(rated_in_sessions(0.6), 0.2, seed=1)
    model, _ = build_auto(train, candidates=FAST, budget=60)
    shift = model.meta["auto"]["time_offsets"]
    assert shift is not None and shift["valid_rmse_with"] < shift["valid_rmse_without"]
    assert model.config.time_points == len(train.frame.groupby(["user", "timestamp"]))
    untimed = test.with_frame(test.frame.drop(columns="timestamp"))
    with_times, without = ck.evaluate_ratings(model, test)["rmse"], ck.evaluate_ratings(model, untimed)["rmse"]
    assert with_times < without - 0.05  # held-out ratings of the same days, scored with their time
    assert ck.evaluate_ratings(model, test)["rmse_without_times"] == pytest.approx(without)
    assert "rmse_without_times" not in ck.evaluate_ratings(model, untimed)


def test_auto_chooses_a_kernel_as_narrow_as_the_sessions_a_mood_lasts():
    """Three ten-minute sessions an hour apart, each with its own mood: one offset per day would
    average the moods away; auto picks a width of minutes, not hours."""
    train, test = ck.random_split(rated_in_sessions(0.6, session_seconds=600, gap=3600), 0.2, seed=1)
    model, _ = build_auto(train, candidates=FAST, budget=60)
    shift = model.meta["auto"]["time_offsets"]
    assert shift is not None and shift["scale"] <= 900
    untimed = test.with_frame(test.frame.drop(columns="timestamp"))
    assert ck.evaluate_ratings(model, test)["rmse"] < ck.evaluate_ratings(model, untimed)["rmse"] - 0.05


def test_auto_leaves_time_offsets_out_where_times_do_not_matter():
    train, _ = ck.random_split(rated_in_sessions(0.0), 0.2, seed=1)
    model, _ = build_auto(train, candidates=FAST, budget=60)
    assert model.meta["auto"]["time_offsets"] is None and model.config.time_points == 0
