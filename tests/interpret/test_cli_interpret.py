"""compare, cross-validate, biases, pca, similar and report from the command line (generated data)."""

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


@pytest.fixture(scope="module")
def model(csv, tmp_path_factory):
    """A dot-bias model trained by `collabkit train --out` (items.json carries no titles here)."""
    out = tmp_path_factory.mktemp("model")
    run(
        "train",
        "--ratings",
        csv,
        "--epochs",
        "3",
        "--lr",
        "0.05",
        "--n-factors",
        "6",
        "--out",
        out,
        "--json",
    )
    return out


def test_compare_json_is_one_object_with_a_row_per_model(csv):
    out = json.loads(
        run(
            "compare",
            "--ratings",
            csv,
            "--models",
            "mean,bias(epochs=2),dot-bias(n_factors=4, epochs=2),most-popular",
            "--json",
        )
    )
    want = ["mean", "bias(epochs=2)", "dot-bias(n_factors=4, epochs=2)", "most-popular"]
    popular = out["models"][3]
    assert popular["rmse"] is None and popular["predicts_ratings"] is False and popular["ndcg@10"] > 0
    assert [m["model"] for m in out["models"]] == want
    assert {"rmse", "mae", "ndcg@10", "precision@10", "recall@10", "fit_seconds"} <= out["models"][
        0
    ].keys()


def test_compare_table_and_bad_spec(csv):
    text = run("compare", "--ratings", csv, "--models", "mean,most-popular", "-k", "5")
    assert "ndcg@5" in text and "most-popular" in text
    assert "unknown model" in run("compare", "--ratings", csv, "--models", "mean,svd", code=2)


def test_cross_validate(csv):
    out = json.loads(
        run(
            "cross-validate",
            "--ratings",
            csv,
            "--model",
            "bias(epochs=1)",
            "--folds",
            "3",
            "--json",
        )
    )
    assert out["n_folds"] == 3 and set(out["mean"]) == set(out["std"])
    assert "precision@10" in run(
        "cross-validate", "--ratings", csv, "--model", "mean", "--folds", "2"
    )


def test_biases(model, csv):
    out = json.loads(
        run("biases", model, "--ratings", csv, "--top", "3", "--min-ratings", "5", "--json")
    )
    assert len(out["top"]) == len(out["bottom"]) == 3
    assert out["top"][0]["bias"] >= out["top"][-1]["bias"] >= out["bottom"][0]["bias"]
    assert -1 <= out["bias_vs_mean"]["spearman"] <= 1
    assert "Spearman" in run("biases", model, "--ratings", csv, "--min-ratings", "5")


def test_biases_reads_the_recorded_training_data(model, csv, tmp_path):
    """The model folder remembers its data: no option needed, whether trained by the CLI or from
    Python; a model trained on a DataFrame has no file to read back, and says so."""
    import collabkit as ck

    assert json.loads(run("biases", model, "--min-ratings", "5", "--json"))["top"]
    train, _ = ck.random_split(ck.read_ratings(csv), 0.2, seed=1)
    python = ck.DotProductBias.from_data(train, n_factors=4)
    python.fit(train, epochs=2)
    ck.save_model(python, tmp_path / "python")
    assert json.loads(run("biases", tmp_path / "python", "--min-ratings", "5", "--json"))["top"]
    framed = ck.read_ratings(ck.read_ratings(csv).frame)
    bare = ck.DotProductBias.from_data(framed, n_factors=4)
    bare.fit(framed, epochs=1)
    ck.save_model(bare, tmp_path / "bare")
    assert "does not record its training data" in run("biases", tmp_path / "bare", code=2)


def test_pca_writes_png_and_html(model, csv, tmp_path):
    png, page = tmp_path / "m.png", tmp_path / "m.html"
    out = json.loads(
        run(
            "pca",
            model,
            "--ratings",
            csv,
            "--png",
            png,
            "--html",
            page,
            "--components",
            "1,3",
            "--json",
        )
    )
    assert png.exists() and page.exists() and len(out["explained_variance_ratio"]) == 3
    assert "--components" in run("pca", model, "--ratings", csv, "--components", "1", code=2)


def test_similar(model):
    out = json.loads(run("similar", model, "105", "-k", "3", "--json"))
    assert len(out["similar"]) == 3 and all(s["item"] != 105 for s in out["similar"])
    users = json.loads(run("similar", model, "3", "--user", "-k", "2", "--json"))
    assert len(users["similar"]) == 2
    assert "unknown item id" in run("similar", model, "Nope (1999)", code=2)


def test_report(model, csv, tmp_path):
    out = json.loads(
        run(
            "report",
            model,
            "--ratings",
            csv,
            "--out",
            tmp_path / "r",
            "--baselines",
            "mean",
            "--json",
        )
    )
    assert out["sections"] == ["model", "training", "biases", "pca", "similar", "compare", "groups", "calibration"]
    assert (tmp_path / "r" / "index.html").exists() and "item_map.png" in out["files"]
