"""Ratings as classes: the ordinal (cumulative-link) model and its calibration metrics."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.evaluate.calibration import (
    evaluate_proba,
    expected_calibration_error,
    reliability,
    save_reliability_png,
)
from collabkit.models.base import FOLD_IN, PROBA, supports
from collabkit.models.ordinal import OrdinalMF
from collabkit.train.build import build_model
from tests.conftest import make_ratings


def fitted(ratings: ck.Ratings, **recipe) -> OrdinalMF:
    model, _ = build_model(ck.train.build.ModelSpec.of("ordinal", **recipe), ratings, seed=0)
    return model


@pytest.fixture(scope="module")
def trained() -> OrdinalMF:
    return fitted(make_ratings(), n_factors=4, epochs=20, lr_max=1e-2, wd=0.01, bs=64)


@pytest.fixture
def ordinal(trained) -> OrdinalMF:
    return copy.deepcopy(trained)  # tests may change its weights


def test_levels_come_from_the_data_and_thresholds_are_ordered(ordinal, tiny):
    assert ordinal.config.levels == tuple(sorted(tiny.frame["rating"].unique()))
    with torch.no_grad():
        ordinal.cut_gaps.copy_(torch.tensor([-30.0, 5.0, -2.0]))  # any raw value: still ordered
    theta = ordinal.thresholds()
    assert (theta.diff() > 0).all()
    assert supports(ordinal, PROBA) and supports(ordinal, FOLD_IN)


def test_expected_slope_is_the_derivative_of_the_expected_rating(ordinal):
    z = torch.linspace(-6, 6, 25, dtype=torch.float64)
    h = 1e-5
    numeric = (ordinal.expected(z + h) - ordinal.expected(z - h)) / (2 * h)
    torch.testing.assert_close(ordinal.expected_slope(z), numeric, atol=1e-6, rtol=1e-5)


def test_a_new_user_folds_in_near_what_training_learned(ordinal, tiny):
    from collabkit.recommend import fold_in_frame

    prior = ordinal.user_prior(tiny)
    users, reprs = fold_in_frame(ordinal, tiny.frame, prior)
    trained = ordinal.user_repr(torch.from_numpy(ordinal.users.lookup(users))).double()
    ir = ordinal.item_repr(torch.arange(len(ordinal.items))).double()
    folded = ordinal.latent(reprs.unsqueeze(1), ir.unsqueeze(0))  # (U, N) latent scores
    learned = ordinal.latent(trained.unsqueeze(1), ir.unsqueeze(0))
    assert np.corrcoef(folded.detach().ravel(), learned.detach().ravel())[0, 1] > 0.9


def test_probabilities_sum_to_one_and_expectation_is_predict(ordinal, tiny):
    f = tiny.frame
    users = list(f["user"][:30]) + ["nobody"]
    items = list(f["item"][:30]) + [f["item"].iloc[0]]
    p = ordinal.predict_proba(users, items)
    assert p.shape == (31, len(ordinal.config.levels)) and (p >= 0).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    expected = p @ np.asarray(ordinal.config.levels)
    # the unknown user's distribution is the baseline predictor's rating, spread over levels
    np.testing.assert_allclose(expected, ordinal.predict(users, items), atol=1e-3)


def test_expected_rating_stays_within_the_scale(ordinal, tiny):
    with torch.no_grad():
        for p in ordinal.parameters():
            p.mul_(50)  # push latent scores far out
    out = ordinal.predict(tiny.frame["user"], tiny.frame["item"])
    lo, hi = ordinal.config.levels[0], ordinal.config.levels[-1]
    assert np.isfinite(out).all() and (out >= lo).all() and (out <= hi).all()


def test_learns_a_planted_signal_better_than_the_mean(ordinal, tiny):
    rmse = ck.evaluate_ratings(ordinal, tiny)["rmse"]
    assert rmse < 0.8 * float(tiny.frame["rating"].std(ddof=0))
    assert evaluate_proba(ordinal, tiny)["log_loss"] < _entropy(tiny.frame["rating"])


def test_half_star_scales_are_classes_too():
    rng = np.random.default_rng(1)
    u, i = rng.integers(0, 30, 600), rng.integers(0, 20, 600)
    frame = pd.DataFrame({"user": u, "item": i, "rating": np.round(rng.uniform(0.5, 5, 600) * 2) / 2})
    frame = frame.drop_duplicates(["user", "item"])
    model = fitted(ck.Ratings(frame, scale=(0.5, 5.0)), n_factors=2, epochs=2)
    assert model.config.levels == tuple(np.unique(frame["rating"]))
    assert model.predict_proba([0], [0]).shape == (1, len(model.config.levels))


def test_save_load_round_trip_identical(ordinal, tiny, tmp_path):
    save_model(ordinal, tmp_path / "m")
    again = load_model(tmp_path / "m")
    f = tiny.frame
    np.testing.assert_array_equal(ordinal.predict(f["user"], f["item"]), again.predict(f["user"], f["item"]))
    np.testing.assert_array_equal(
        ordinal.predict_proba(f["user"], f["item"]), again.predict_proba(f["user"], f["item"])
    )


def test_score_all_items_matches_pairwise(ordinal):
    u = torch.tensor([0, 2, 5])
    n = len(ordinal.items)
    pairs = ordinal.predict_idx(u.repeat_interleave(n), torch.arange(n).repeat(3))
    torch.testing.assert_close(ordinal.score_all_items(u), pairs.view(3, -1), rtol=1e-5, atol=1e-5)


def test_training_reports_validation_cross_entropy(tiny):
    train, valid = ck.random_split(tiny, 0.2, seed=0)
    _, history = build_model("ordinal(n_factors=4, epochs=3)", train, valid)
    assert all(np.isfinite(r["valid_loss"]) and r["valid_loss"] > 0 for r in history.rows)


def test_calibration_metrics():
    q = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(q, np.array([0, 0, 1, 1])) == pytest.approx(0.1)
    assert expected_calibration_error(np.full(10, 0.3), np.r_[np.ones(3), np.zeros(7)]) == pytest.approx(0.0)
    table = reliability(q, np.array([0, 1, 1, 1]), bins=5)
    assert table["count"].sum() == 4 and table.loc[4, "observed"] == 1.0


def test_reliability_png(tmp_path):
    rng = np.random.default_rng(0)
    q = rng.random(500)
    path = save_reliability_png(reliability(q, rng.random(500) < q), tmp_path / "r.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and [p.name for p in tmp_path.iterdir()] == ["r.png"]


def _entropy(r: pd.Series) -> float:
    p = r.value_counts(normalize=True).to_numpy()
    return float(-(p * np.log(p)).sum())


def test_report_shows_calibration_and_its_reliability_plot(ordinal, tmp_path):
    from collabkit.interpret.report import write_report

    data = make_ratings()
    save_model(ordinal, tmp_path / "m")
    out = write_report(tmp_path / "m", tmp_path / "r", data, data, baselines=())
    assert "reliability.png" in out["files"] and 0 <= out["calibration"]["ece@4"] <= 1
    page = (tmp_path / "r" / "index.html").read_text()
    assert 'id="reliability-chart" class="plotly-graph-div"' in page  # drawn by Plotly in the page


def test_cli_predict_proba(tmp_path):
    from typer.testing import CliRunner

    from collabkit.cli import app

    path = tmp_path / "r.csv"
    make_ratings().frame.to_csv(path, index=False)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--ratings", str(path), "--model", "ordinal(n_factors=4, epochs=2)",
                                  "--out", str(tmp_path / "m"), "--json", "--no-progress"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    out = runner.invoke(app, ["predict", str(tmp_path / "m"), "1", "101", "--proba", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert list(result["proba"]) == ["1", "2", "3", "4", "5"]
    assert sum(result["proba"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["prediction"] == pytest.approx(sum(int(k) * v for k, v in result["proba"].items()), abs=1e-3)
    plain = runner.invoke(app, ["predict", str(tmp_path / "m"), "1", "101"])
    assert plain.exit_code == 0 and float(plain.stdout.split()[0]) == pytest.approx(result["prediction"], abs=1e-3)


@pytest.mark.slow
def test_ordinal_on_ml100k_u1_matches_mse_and_is_calibrated(data_root):
    """The issue's acceptance: RMSE within 0.01 of the MSE dot-bias of the same size, ECE <= 0.03."""
    train, test = ck.canonical_split("u1", data_dir=data_root / "ml-100k")
    mse, _ = build_model("dot-bias(n_factors=50)", train)
    ordinal, _ = build_model("ordinal(n_factors=50)", train)
    assert ck.evaluate_ratings(ordinal, test)["rmse"] <= ck.evaluate_ratings(mse, test)["rmse"] + 0.01
    assert evaluate_proba(ordinal, test)["ece@4"] <= 0.03
