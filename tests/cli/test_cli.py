from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from collabkit.checkpoint import load_model
from collabkit.cli import app
from tests.conftest import make_ratings

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "ratings.csv"
    r = make_ratings()
    r.frame.assign(user=[f"u{x}" for x in r.frame.user]).rename(
        columns={"user": "who", "item": "movie", "rating": "stars"}
    ).to_csv(path, index=False)
    return path


def test_train_json_then_predict_in_a_new_process(csv, tmp_path):
    out = tmp_path / "model"
    cols = ["--ratings", csv, "--user-col", "who", "--item-col", "movie", "--rating-col", "stars"]
    result = json.loads(run("train", *cols, "--epochs", "3", "--out", out, "--json"))
    assert {"rmse", "mae", "fit_seconds", "setup_seconds", "n_train", "n_test"} <= result.keys()
    assert result["n_train"] + result["n_test"] == len(make_ratings())
    here = float(load_model(out).predict(["u3"], [105])[0])
    proc = subprocess.run(
        [sys.executable, "-m", "collabkit.cli", "predict", str(out), "u3", "105", "--json"],
        capture_output=True, text=True, check=True,
    )
    there = json.loads(proc.stdout)
    assert there["user"] == "u3" and there["prediction"] == pytest.approx(here, abs=0)


def test_train_prints_epoch_table_by_default(csv):
    text = run("train", "--ratings", csv, "--user-col", "who", "--item-col", "movie", "--rating-col", "stars", "--epochs", "2", "--no-progress")
    assert "train_loss" in text and "rmse" in text


def test_evaluate_reports_unknown_users(csv, tmp_path):
    out = tmp_path / "model"
    cols = ["--user-col", "who", "--item-col", "movie", "--rating-col", "stars"]
    run("train", "--ratings", csv, *cols, "--epochs", "1", "--out", out, "--json")
    held = tmp_path / "held.csv"
    held.write_text("who,movie,stars\nstranger,101,3\nu2,99999,2\n")
    result = json.loads(run("evaluate", out, "--test", held, "--json"))
    assert result["n_test"] == 2 and result["n_unknown_users"] == 1 and result["n_unknown_items"] == 1
    assert result["n_fallback"] == 2 and np.isfinite(result["rmse"]) and "rmse_known" not in result


def test_evaluate_uses_the_recorded_split_and_refuses_training_data(csv, tmp_path):
    """Trained with --split random --seed 7: evaluate scores that test part, and nothing else silently."""
    out = tmp_path / "model"
    cols = ["--user-col", "who", "--item-col", "movie", "--rating-col", "stars"]
    trained = json.loads(run("train", "--ratings", csv, *cols, "--seed", "7", "--epochs", "2", "--out", out, "--json"))
    again = json.loads(run("evaluate", out, "--json"))
    assert again["rmse"] == pytest.approx(trained["rmse"]) and again["n_test"] == trained["n_test"]
    refused = runner.invoke(app, ["evaluate", str(out), "--test", str(csv)])
    assert refused.exit_code == 2 and "trained on" in refused.output
    flagged = json.loads(run("evaluate", out, "--test", csv, "--allow-train-overlap", "--json"))
    assert flagged["scored_on"] == "training data" and flagged["n_train_overlap"] == trained["n_train"]


def test_bad_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,5\n1,3,lots\n")
    result = runner.invoke(app, ["train", "--ratings", str(bad)])
    assert result.exit_code == 2
    assert "bad.csv" in result.output and "line 3" in result.output and "lots" in result.output


def test_predict_unknown_user_fails_clearly(csv, tmp_path):
    out = tmp_path / "model"
    run("train", "--ratings", csv, "--user-col", "who", "--item-col", "movie", "--rating-col", "stars", "--epochs", "1", "--out", out, "--json")
    result = runner.invoke(app, ["predict", str(out), "nobody", "101"])
    assert result.exit_code == 2 and "unknown user" in result.output


def test_crosstab_shows_blanks(csv):
    text = run("crosstab", "--ratings", csv, "--user-col", "who", "--item-col", "movie", "--rating-col", "stars", "--n-users", "5", "--n-items", "5")
    assert "most active users" in text


def test_lr_find_json_and_plot(csv, tmp_path):
    obj = json.loads(run("lr-find", "--ratings", csv, "--user-col", "who", "--item-col", "movie", "--rating-col", "stars", "--plot", tmp_path / "lr.png", "--json"))
    assert obj["suggestion"] > 0 and (tmp_path / "lr.png").exists()
    # validated: the suggestion is the candidate fraction of the valley with the best validation RMSE
    scores = obj["validation_rmse"]
    assert len(scores) == 4 and f"{obj['suggestion']:.3g}" == min(scores, key=scores.get)


def test_train_implicit_from_a_click_log_then_recommend(tmp_path):
    """--implicit on a log with no rating column: counts via --duplicates sum, ranking metrics out."""
    r = make_ratings(n_users=80, n_items=50, density=0.4)
    log = r.frame.loc[r.frame.rating >= 3, ["user", "item"]]
    clicks = tmp_path / "clicks.csv"
    pd.concat([log, log.iloc[::3]]).to_csv(clicks, index=False)  # some items clicked twice
    out = tmp_path / "als"
    cols = ["--ratings", clicks, "--rating-col", "", "--duplicates", "sum"]
    result = json.loads(run("train", *cols, "--implicit", "--threshold", "0", "--model", "als",
                            "--split", "user", "--out", out, "--json"))
    assert {"ndcg@10", "recall@10", "precision@10", "fit_seconds"} <= result.keys()
    assert "rmse" not in result and result["n_users"] > 0
    bad = runner.invoke(app, ["train", *map(str, cols), "--implicit", "--threshold", "0", "--model", "dot-bias"])
    assert bad.exit_code == 2 and "is a rating model" in bad.output
    assert load_model(out).kind == "als"
    recs = json.loads(run("recommend", out, "1", "-n", "5", *cols[:4], "--json"))["recommendations"]
    seen = set(log.item[log.user == 1])
    assert len(recs) == 5 and not {x["item"] for x in recs} & seen


def test_train_preset_and_its_conflicts(csv):
    cols = ["--ratings", csv, "--user-col", "who", "--item-col", "movie", "--rating-col", "stars"]
    result = json.loads(run("train", *cols, "--preset", "chapter", "--json"))
    assert result["model"] == "chapter" and result["rmse"] < 1.2
    bad = runner.invoke(app, ["train", *map(str, cols), "--preset", "best", "--model", "dot"])
    assert bad.exit_code == 2 and "--preset" in bad.output
    bad = runner.invoke(app, ["train", *map(str, cols), "--preset", "fastest"])
    assert bad.exit_code == 2 and "unknown model 'fastest'" in bad.output


def test_evaluate_an_implicit_model_from_its_folder(tmp_path):
    """An implicit model is scored by ranking metrics on the recorded split, positives as at train."""
    r = make_ratings(n_users=80, n_items=50, density=0.4)
    path = tmp_path / "r.csv"
    r.frame.to_csv(path, index=False)
    out = tmp_path / "als"
    trained = json.loads(run("train", "--ratings", path, "--implicit", "--model", "als", "--split", "user", "--out", out, "--json"))
    again = json.loads(run("evaluate", out, "--json"))
    assert again["ndcg@10"] == pytest.approx(trained["ndcg@10"]) and "rmse" not in again


def test_train_warns_when_the_model_loses_to_the_baseline(tmp_path):
    """Guard rail: an over-fitted model (many factors, no weight decay) is reported as such."""
    path = tmp_path / "r.csv"
    make_ratings(n_users=60, n_items=40, density=0.15, seed=4).frame.to_csv(path, index=False)
    args = ["train", "--ratings", str(path), "--model", "dot(n_factors=64)", "--epochs", "40", "--lr", "0.1", "--wd", "0", "--no-progress"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["rmse"] > out["baseline_rmse"]
    assert "worse than the baseline predictor" in result.output
    # what it suggests is what is better here, measured: the baseline itself (with its RMSE) and
    # auto; never a model that may be just as bad (the bias model used to be suggested)
    advice = " ".join(result.output.split())
    assert f"--model baseline (the baseline predictor mu + b_u + b_i: RMSE {out['baseline_rmse']:.4f}" in advice
    assert "--preset auto" in advice and "bias model" not in advice and "--wd" not in advice
    baseline = json.loads(runner.invoke(app, ["train", "--ratings", str(path), "--model", "baseline", "--json"]).stdout.strip().splitlines()[-1])
    assert baseline["rmse"] == pytest.approx(out["baseline_rmse"])  # the named model scores what was said


def test_an_auto_model_that_loses_to_its_baseline_is_told_the_exact_baseline_spec():
    """auto's baseline predictor is its fallback candidate's (here reg 5/5), not --model baseline's
    (25/10): the advice names that spec, and training it scores what the advice said."""
    from rich.console import Console

    from collabkit.cli.train import _warn_if_worse_than_baseline
    from collabkit.data.split import random_split
    from collabkit.train.auto import build_auto
    from collabkit.train.build import build_model
    from collabkit.train.spec import ModelSpec

    train, test = random_split(make_ratings(n_users=60, n_items=40, density=0.3, seed=5), 0.2, seed=1)
    spec = "baseline(reg_item=5.0, reg_user=5.0)"
    net, _ = build_auto(train, candidates=(spec, "dot-bias(n_factors=4, epochs=3)"), budget=60)
    assert net.meta["auto"]["fallback"]["spec"] == spec
    log, result = Console(record=True, width=400), {"rmse": 99.0}
    _warn_if_worse_than_baseline(net, test, result, log, ModelSpec.parse("auto"))
    advice = " ".join(log.export_text().split())
    assert f"--model '{spec}' (the baseline predictor mu + b_u + b_i: RMSE {result['baseline_rmse']:.4f}" in advice
    assert "--preset auto" not in advice  # auto is the model that lost
    named, _ = build_model(spec, train)
    p = named.predict(test.frame["user"], test.frame["item"])
    assert float(np.sqrt(np.mean((p - test.frame["rating"].to_numpy()) ** 2))) == pytest.approx(result["baseline_rmse"], rel=1e-5)


def test_lr_flag_sets_each_kinds_own_learning_rate():
    """--lr is the one-cycle lr_max of gradient-trained kinds, and AutoRec's own Adam lr."""
    from collabkit.cli.train import _overrides
    from collabkit.train.spec import ModelSpec

    assert _overrides(ModelSpec.parse("autorec"), None, None, None, 0.01, None, None) == {"lr": 0.01}
    assert _overrides(ModelSpec.parse("dot-bias"), None, None, 3, 0.01, None, None) == {"lr_max": 0.01, "epochs": 3}
    assert _overrides(ModelSpec.parse("als"), None, None, 3, None, None, None) == {"iterations": 3}
