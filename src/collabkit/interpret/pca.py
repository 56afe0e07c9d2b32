"""The chapter's map: item factors projected on their principal components, as PNG and as HTML.

PCA of the centred factor matrix X (n_items x F) via torch's SVD, X = U S V^T: component j is the
direction V[:, j], item coordinates are X V[:, :K], and component j explains S_j^2 / sum(S^2) of
the variance. Signs are made deterministic (the largest loading of each component is positive).
As in the chapter the PCA is fitted on the most-rated items (their factors are the best
estimated) and the map shows the top few of them, titled.

The HTML page is a Plotly figure in a self-contained file (Plotly's JS inline, see ``charts``):
hover a point for its title, genres, bias and rating count; no CDN, no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from collabkit.data.interactions import Ratings
from collabkit.files import atomic_path, atomic_write_text
from collabkit.interpret.charts import figure_html, html_page, plain
from collabkit.interpret.similar import factors
from collabkit.models.base import BIASES, CollabModel, supports


@dataclass
class ItemPCA:
    """Principal components of the item factors and every fitted item's coordinates."""

    # one row per fitted item: item, pc1..pcK (+ title, genres, bias, n_ratings when known)
    coords: pd.DataFrame
    components: np.ndarray  # (K, F) unit directions in factor space
    explained_variance_ratio: np.ndarray  # (K,) share of the total variance of the fitted factors

    def extremes(self, component: int, n: int = 5) -> dict[str, list]:
        """The ``n`` items at each end of a component (1-based): what the axis means, in titles."""
        c = self.coords.sort_values(f"pc{component}", kind="stable")
        name = "title" if "title" in c.columns else "item"
        return {"low": c[name].head(n).tolist(), "high": c[name].tail(n)[::-1].tolist()}

    def to_json(self, n_extremes: int = 5) -> dict:
        return {
            "n_items": len(self.coords),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "components": self.components.tolist(),
            "extremes": {
                f"pc{j + 1}": self.extremes(j + 1, n_extremes) for j in range(len(self.components))
            },
        }


def item_pca(
    model: CollabModel,
    n_components: int = 3,
    ratings: Ratings | None = None,
    items: pd.DataFrame | None = None,
    top: int | None = 1000,
) -> ItemPCA:
    """PCA of the factors of the ``top`` most-rated items of ``ratings`` (all items without
    ratings or with top=None); ``items`` metadata adds titles and genres to the coordinates."""
    f = factors(model, "item").double()  # (n_items, F)
    coords = pd.DataFrame({"item": model.items.ids})
    if items is not None:
        for col in ("title", "genres"):
            if col in items.columns:
                coords[col] = items[col].reindex(coords["item"]).to_numpy()
    if supports(model, BIASES):
        coords["bias"] = model.biases("item").double().numpy()
    rows = np.arange(len(coords))
    if ratings is not None:
        counts = ratings.frame["item"].value_counts()
        coords["n_ratings"] = counts.reindex(coords["item"]).fillna(0).astype(np.int64).to_numpy()
        if top is not None:  # most-rated first; ties by index
            rows = np.argsort(-coords["n_ratings"].to_numpy(), kind="stable")[:top]
    x = f[torch.from_numpy(rows)]
    k = min(n_components, x.shape[0], x.shape[1])
    if k < 2:
        raise ValueError(
            f"PCA needs at least 2 items and 2 factors, got {x.shape[0]} x {x.shape[1]}"
        )
    x = x - x.mean(0)
    _, s, vt = torch.linalg.svd(x, full_matrices=False)
    v = vt[:k]
    v = v * torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))  # largest loading positive
    pcs = (x @ v.T).numpy()
    out = coords.iloc[rows].reset_index(drop=True)
    for j in range(k):
        out.insert(1 + j, f"pc{j + 1}", pcs[:, j])
    var = (s**2).numpy()
    return ItemPCA(out, v.numpy(), var[:k] / var.sum())


def map_points(pca: ItemPCA, n: int = 50) -> pd.DataFrame:
    """The ``n`` items the map shows: the most-rated (first ``n`` fitted items without counts)."""
    c = pca.coords
    if "n_ratings" in c.columns:
        return c.iloc[np.argsort(-c["n_ratings"].to_numpy(), kind="stable")[:n]]
    return c.head(n)


def save_png(pca: ItemPCA, path: str | Path, n: int = 50, x: int = 1, y: int = 2) -> Path:
    """Scatter of ``n`` most-rated items on components ``x`` and ``y`` (1-based), titled (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    _check_axes(pca, x, y)
    pts = map_points(pca, n)
    labels = _labels(pts)
    fig, ax = plt.subplots(figsize=(12, 11), dpi=100)
    xs, ys = pts[f"pc{x}"].to_numpy(), pts[f"pc{y}"].to_numpy()
    ax.scatter(xs, ys, s=14, color="#1f77b4")
    ev = pca.explained_variance_ratio
    ax.set_xlabel(f"PC{x} ({ev[x - 1]:.1%} of variance)")
    ax.set_ylabel(f"PC{y} ({ev[y - 1]:.1%} of variance)")
    ax.set_title(
        f"Item factors: the {len(pts)} most-rated items on principal components {x} and {y}"
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()  # before placing labels: it moves the axes
    w, h = fig.canvas.get_width_height()
    xy = ax.transData.transform(np.c_[xs, ys])  # pixels, y up
    px_per_pt, fontsize = fig.dpi / 72, 7.5
    offsets = place_labels(xy[:, 0], h - xy[:, 1], labels, fontsize * px_per_pt, (0, 0, w, h))
    for px, py, (dx, dy), label in zip(xs, ys, offsets, labels):
        ax.annotate(
            label, (px, py), xytext=(dx / px_per_pt, -dy / px_per_pt), textcoords="offset points",
            fontsize=fontsize, va="baseline",
        )  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def map_figure(pca: ItemPCA, n: int = 50, x: int = 1, y: int = 2) -> go.Figure:
    """The same map as a Plotly figure: titled points with their details on hover, zoom and pan."""
    _check_axes(pca, x, y)
    pts = map_points(pca, n)
    hover = []
    for (_, row), label in zip(pts.iterrows(), _labels(pts)):
        lines = [f"<b>{plain(label)}</b>"]
        if isinstance(row.get("genres"), str):
            lines.append(plain(row["genres"].replace("|", ", ")))
        if "bias" in row.index and np.isfinite(row["bias"]):
            lines.append(f"bias {row['bias']:.3f}")
        if "n_ratings" in row.index:
            lines.append(f"{row['n_ratings']} ratings")
        hover.append("<br>".join(lines))
    ev = pca.explained_variance_ratio
    points = go.Scatter(
        x=pts[f"pc{x}"], y=pts[f"pc{y}"], mode="markers+text", name="items",
        text=[plain(t) for t in _labels(pts)], textposition="top center", textfont={"size": 10},
        hovertext=hover, hoverinfo="text", marker={"size": 7, "color": "#1f77b4"},
    )  # fmt: skip
    fig = go.Figure(points)
    fig.update_layout(
        xaxis_title=f"PC{x} ({ev[x - 1]:.1%} of variance)",
        yaxis_title=f"PC{y} ({ev[y - 1]:.1%} of variance)",
        dragmode="pan", hovermode="closest", margin={"l": 60, "r": 20, "t": 20, "b": 50},
    )  # fmt: skip
    return fig


def save_html(pca: ItemPCA, path: str | Path, n: int = 50, x: int = 1, y: int = 2) -> Path:
    """The interactive map as one self-contained HTML file (Plotly inline): hover, zoom, pan."""
    ev = pca.explained_variance_ratio
    body = (
        f"<p>The {min(n, len(pca.coords))} most-rated items on principal components {x} and {y} of the "
        f"item factors ({ev[x - 1]:.1%} and {ev[y - 1]:.1%} of the variance). Hover a point for its "
        "details; drag to pan, scroll to zoom.</p>" + figure_html(map_figure(pca, n, x, y), "item-map", 700)
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html_page("Item factor map", body))
    return path


def place_labels(
    x: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    size: float,
    bounds: tuple[float, float, float, float],
) -> list[tuple[float, float]]:
    """Greedy label placement, in pixels with y growing downwards: for each point in turn, the
    baseline offset (dx, dy), right of the point or left, level, above or below, whose text box
    stays inside ``bounds`` (x0, y0, x1, y1) and covers the fewest points and the least area of
    the labels placed before it (the first with nothing in the way wins).

    Text boxes are estimated, not measured: 0.6 x ``size`` per character wide, ``size`` high.
    """
    gap, h = 4.0, size
    levels = (h / 3, -gap, h + gap, -gap - h, 2 * h + gap)
    points = np.c_[x, y]
    placed = np.zeros((0, 4))  # x0, y0, x1, y1 of the labels so far
    out = []
    for k, label in enumerate(labels):
        w = 0.6 * size * len(label)
        best, best_cost = (gap, levels[0]), np.inf
        for dx, dy in [(gap, d) for d in levels] + [(-gap - w, d) for d in levels]:
            x0, y0, x1, y1 = x[k] + dx - 1, y[k] + dy - h, x[k] + dx + w + 1, y[k] + dy + 2
            outside = x0 < bounds[0] or x1 > bounds[2] or y0 < bounds[1] or y1 > bounds[3]
            covered = (
                (points[:, 0] > x0 - 3) & (points[:, 0] < x1 + 3)
                & (points[:, 1] > y0 - 3) & (points[:, 1] < y1 + 3)
            )  # fmt: skip
            covered[k] = False
            ow = np.clip(np.minimum(x1, placed[:, 2]) - np.maximum(x0, placed[:, 0]), 0, None)
            oh = np.clip(np.minimum(y1, placed[:, 3]) - np.maximum(y0, placed[:, 1]), 0, None)
            cost = 1e6 * outside + 1e3 * covered.sum() + float((ow * oh).sum())
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
            if cost == 0:
                break
        dx, dy = best
        placed = np.vstack([placed, [x[k] + dx, y[k] + dy - h, x[k] + dx + w, y[k] + dy]])
        out.append(best)
    return out


def _labels(pts: pd.DataFrame) -> list[str]:
    col = pts["title"] if "title" in pts.columns else pts["item"]
    return [str(t) if isinstance(t, str) else str(i) for t, i in zip(col, pts["item"])]


def _check_axes(pca: ItemPCA, x: int, y: int) -> None:
    k = len(pca.components)
    if not (1 <= x <= k and 1 <= y <= k) or x == y:
        raise ValueError(f"components must be two different numbers in 1..{k}, got {x} and {y}")
