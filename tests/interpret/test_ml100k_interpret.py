"""The chapter's interpretation on the real ML-100k: a 50-factor DotProductBias trained on u1."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from collabkit.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def run(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def model(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ml100k")
    run(
        "train",
        "--dataset",
        "ml-100k",
        "--data-dir",
        data_root,
        "--split",
        "u1",
        "--out",
        out,
        "--json",
    )
    return out


def test_top_and_bottom_biases_have_titles(model, data_root):
    out = json.loads(run("biases", model, "--data-dir", data_root, "--top", "5", "--json"))
    assert len(out["top"]) == len(out["bottom"]) == 5
    assert all(row["title"].endswith(")") for row in out["top"] + out["bottom"])
    assert min(r["mean_rating"] for r in out["top"]) > 3.8  # liked films
    assert max(r["mean_rating"] for r in out["bottom"]) < 2.8
    assert out["bias_vs_mean"]["spearman"] > 0.8
    text = run("biases", model, "--data-dir", data_root, "--top", "5")
    assert "Top 5 items by bias" in text and "Bottom 5 items by bias" in text


def test_similar_to_silence_of_the_lambs(model):
    out = json.loads(run("similar", model, "Silence of the Lambs, The (1991)", "-k", "5", "--json"))
    titles = [s["title"] for s in out["similar"]]
    assert len(titles) == 5 and "Silence of the Lambs, The (1991)" not in titles
    assert "Shawshank" in run("similar", model, "Silence of the Lambs, The (1991)", "-k", "5")


def test_pca_map_shows_titles(model, data_root, tmp_path):
    png, page = tmp_path / "map.png", tmp_path / "map.html"
    out = json.loads(
        run("pca", model, "--data-dir", data_root, "--png", png, "--html", page, "--json")
    )
    assert png.stat().st_size > 10_000 and out["n_items"] == 1000
    html = page.read_text()
    assert "Star Wars (1977)" in html and "Fargo (1996)" in html


def test_report(model, data_root, tmp_path):
    out = json.loads(
        run("report", model, "--data-dir", data_root, "--out", tmp_path / "r", "--json")
    )
    page = (tmp_path / "r" / "index.html").read_text()
    for section in out["sections"]:
        assert f"<section id='{section}'>" in page
    assert "dot-bias (this model)" in page and "Star Wars (1977)" in page
