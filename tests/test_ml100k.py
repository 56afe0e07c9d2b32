"""The chapter's recipes on the real MovieLens 100k (needs $COLLABKIT_TEST_DATA; a few seconds each)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from collabkit.cli import app

pytestmark = pytest.mark.slow


def train_json(data_root, *args: str) -> dict:
    split = [] if "--split" in args else ["--split", "u1"]  # an option given twice is an error
    result = CliRunner().invoke(
        app, ["train", "--dataset", "ml-100k", "--data-dir", str(data_root), *split, "--json", *args]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_chapter_recipe_dot_bias_on_u1(data_root):
    out = train_json(data_root, "--model", "dot-bias", "--epochs", "5", "--lr", "5e-3", "--wd", "0.1")
    assert out["n_train"] == 80000 and out["n_test"] == 20000
    assert out["rmse"] <= 0.935


def test_chapter_recipe_embedding_nn_on_u1(data_root):
    out = train_json(data_root, "--model", "nn", "--layers", "100", "--epochs", "5", "--lr", "5e-3", "--wd", "0.1")
    assert out["rmse"] <= 0.945


def test_preset_best_reaches_0_880_on_u1_with_its_time_offsets(data_root):
    """The accuracy preset (tuned on validation ratings of u1.base only) on the u1 test ratings,
    scored with their times: below GLocal-K's published 0.889 and issue 26's 0.880
    (bench/accuracy.py measures 0.8747); without the time offsets the same model scores ~0.886."""
    out = train_json(data_root, "--preset", "best")
    assert out["rmse"] <= 0.880
    assert out["rmse_without_times"] >= out["rmse"] + 0.005


def test_implicit_models_beat_most_popular_and_reach_ease(data_root):
    """ML-100k as implicit (rating >= 4), 20% of each user's positives held out: NDCG@10."""
    ndcg = {
        kind: train_json(data_root, "--implicit", "--model", kind, "--split", "user")["ndcg@10"]
        for kind in ("most-popular", "ease", "als", "bpr")
    }
    for kind in ("ease", "als", "bpr"):
        assert ndcg[kind] > 1.5 * ndcg["most-popular"], ndcg
    assert max(ndcg["als"], ndcg["bpr"]) >= 0.95 * ndcg["ease"], ndcg
