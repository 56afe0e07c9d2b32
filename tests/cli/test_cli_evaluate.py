"""compare, evaluate and cross-validate from the command line: intervals, the paired test, groups,
the held-out-user protocol and the time cut (generated data)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_ratings
from tests.conftest import run_cli as run


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    make_ratings(n_users=80, n_items=50, density=0.4).frame.to_csv(path, index=False)
    return path


def test_compare_with_a_baseline_marks_what_is_not_significant(csv):
    bias = "bias(epochs=15, lr_max=0.05, wd=0.01)"  # tiny data: few batches an epoch, so train harder
    args = ["compare", "--ratings", csv, "--models", f"mean,{bias},{bias[:-1]}, seed=42)", "--baseline", bias]
    out = json.loads(run(*args, "--json"))
    assert out["baseline"] == bias and out["level"] == 0.95
    mean, base, same = out["models"]
    assert "vs_baseline" not in base
    assert mean["vs_baseline"]["rmse"]["significant"] is True and mean["vs_baseline"]["rmse"]["diff"] > 0
    assert same["vs_baseline"]["rmse"] == {"diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0, "significant": False}
    low, high = mean["intervals"]["ndcg@10"]
    assert low <= mean["ndcg@10"] <= high
    text = run(*args)
    assert f"{bias} (baseline)" in text and " ns" in text and f"difference from {bias}" in text
    assert "[low, high]" in text
    assert "not one of the models" in run("compare", "--ratings", csv, "--models", "mean", "--baseline", "bias", code=2)


def test_compare_by_group_and_time_cut(csv):
    out = json.loads(run("compare", "--ratings", csv, "--models", "bias(epochs=2)", "--timestamp-col", "timestamp", "--split", "timecut", "--by", "user-activity", "--json"))
    assert out["split"] == "timecut" and out["by"] == "user-activity"
    groups = out["models"][0]["groups"]
    assert [g["group"] for g in groups] == ["0", "1", "2-5", "6-20", "21-100", ">100"]
    assert "by item-popularity" in run("compare", "--ratings", csv, "--models", "bias(epochs=2)", "--by", "item-popularity")
    assert "--by must be one of" in run("compare", "--ratings", csv, "--models", "mean", "--by", "age", code=2)


def test_compare_heldout_users(csv):
    out = json.loads(run(
        "compare", "--ratings", csv, "--models", "most-popular,ease", "--protocol", "heldout-users",
        "--heldout-users", "20", "--baseline", "most-popular", "--json",
    ))  # fmt: skip
    assert out["protocol"] == "heldout-users"
    ease = out["models"][1]
    assert ease["n_heldout_users"] == 20 and {"recall@20", "recall@50", "ndcg@100"} <= ease.keys()
    assert set(ease["vs_baseline"]) == {"recall@20", "recall@50", "ndcg@100"}
    assert "held-out users" in run("compare", "--ratings", csv, "--models", "ease", "--protocol", "heldout-users")
    assert "cannot fold in" in run("compare", "--ratings", csv, "--models", "mean", "--protocol", "heldout-users", code=2)
    assert "leave out --split" in run("compare", "--ratings", csv, "--protocol", "heldout-users", "--split", "user", code=2)


def test_evaluate_and_cross_validate_report_intervals(csv, tmp_path):
    run("train", "--ratings", csv, "--model", "bias", "--epochs", "2", "--out", tmp_path / "m", "--json")
    out = json.loads(run("evaluate", tmp_path / "m", "--by", "user-activity", "--json"))
    assert set(out["intervals"]) == {"rmse", "mae"}
    low, high = out["intervals"]["rmse"]
    assert low <= out["rmse"] <= high
    assert sum(g["n_ratings"] for g in out["groups"]) == out["n_test"]
    assert "95% interval" in run("evaluate", tmp_path / "m")
    cv = json.loads(run("cross-validate", "--ratings", csv, "--model", "bias(epochs=1)", "--folds", "2", "--json"))
    assert cv["intervals"]["rmse"][0] <= cv["mean"]["rmse"] <= cv["intervals"]["rmse"][1]
