"""PCA of item factors against numpy, the PNG, the self-contained Plotly map, label placement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from plotly_page import figures, has_inline_plotly, parse

from collabkit.interpret.pca import item_pca, map_figure, place_labels, save_html, save_png
from collabkit.models.dot import DotProductBias
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def data():
    return make_ratings(n_users=60, n_items=40)


@pytest.fixture(scope="module")
def model(data):
    m = DotProductBias.from_data(data, n_factors=6)
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 6)) * np.array([[3.0], [1.0]])  # two directions, unequal spread
    f = rng.normal(size=(40, 2)) @ basis + rng.normal(scale=0.01, size=(40, 6))
    with torch.no_grad():
        m.item_factors.weight.copy_(torch.tensor(f, dtype=torch.float32))
    return m


def test_components_and_variance_match_numpy(model):
    pca = item_pca(model, n_components=3)
    x = model.item_factors.weight.detach().double().numpy()
    x = x - x.mean(0)
    eig = np.sort(np.linalg.eigvalsh(x.T @ x))[::-1]
    assert pca.explained_variance_ratio == pytest.approx(eig[:3] / eig.sum(), rel=1e-5)
    assert pca.explained_variance_ratio[:2].sum() > 0.99  # the factors lie on a plane
    c = pca.components
    assert c @ c.T == pytest.approx(np.eye(3), abs=1e-6)  # orthonormal directions
    assert (c[np.arange(3), np.abs(c).argmax(1)] > 0).all()  # deterministic signs
    coords = pca.coords[["pc1", "pc2", "pc3"]].to_numpy()
    assert coords == pytest.approx(x @ c.T, abs=1e-5)


def test_fits_the_most_rated_items_and_annotates(model, data):
    pca = item_pca(model, 2, ratings=data, items=data.items, top=10)
    counts = data.frame["item"].value_counts()
    assert len(pca.coords) == 10
    assert set(pca.coords["item"]) == set(
        counts.sort_values(ascending=False, kind="stable").index[:10]
    )
    assert {"title", "bias", "n_ratings"} <= set(pca.coords.columns)
    ends = pca.extremes(1, n=2)
    assert ends["low"][0] == pca.coords.sort_values("pc1")["title"].iloc[0]
    assert json.loads(json.dumps(pca.to_json()))["n_items"] == 10


def test_png_is_written(model, data, tmp_path):
    path = save_png(
        item_pca(model, 3, data, data.items), tmp_path / "sub" / "map.png", n=20, x=1, y=3
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_a_self_contained_plotly_map_with_titles_and_hover_data(model, data, tmp_path):
    pca = item_pca(model, 3, data, data.items)
    text = save_html(pca, tmp_path / "map.html", n=15).read_text()
    page = parse(text)
    assert not page.external and has_inline_plotly(page)  # offline: Plotly's JS is in the file
    (trace,) = figures(text)["item-map"]
    shown = pca.coords.sort_values("n_ratings", ascending=False, kind="stable").head(15)
    assert trace["x"] == pytest.approx(shown["pc1"].tolist())
    assert trace["y"] == pytest.approx(shown["pc2"].tolist())
    assert trace["text"] == shown["title"].tolist() and trace["text"][0].startswith("Movie")
    for hover, (_, row) in zip(trace["hovertext"], shown.iterrows()):
        assert hover.startswith(f"<b>{row['title']}</b>")
        assert f"bias {row['bias']:.3f}" in hover and f"{row['n_ratings']} ratings" in hover


def test_bad_components(model):
    pca = item_pca(model, 3)
    for x, y in [(1, 1), (0, 2), (1, 4)]:
        with pytest.raises(ValueError, match="components"):
            map_figure(pca, x=x, y=y)


def test_labels_avoid_each_other_and_stay_inside():
    # two points side by side: the first label goes right, the second must go elsewhere
    x, y = np.array([100.0, 160.0]), np.array([100.0, 100.0])
    (dx0, dy0), (dx1, dy1) = place_labels(x, y, ["left label", "right label"], 10, (0, 0, 400, 200))
    assert dx0 > 0
    box0 = (x[0] + dx0, y[0] + dy0 - 10, x[0] + dx0 + 60, y[0] + dy0)
    box1 = (x[1] + dx1, y[1] + dy1 - 10, x[1] + dx1 + 66, y[1] + dy1)
    assert box0[2] <= box1[0] or box1[2] <= box0[0] or box0[3] <= box1[1] or box1[3] <= box0[1]
    # a point at the right edge is labelled to its left
    ((dx, _),) = place_labels(np.array([390.0]), np.array([50.0]), ["edge"], 10, (0, 0, 400, 200))
    assert dx < 0
