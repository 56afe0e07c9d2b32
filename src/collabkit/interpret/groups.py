"""Charts of results by group (``evaluate.groups``): one panel per metric, one line per model, the
groups along x, each point with its 95% interval as an error bar; groups without users are left out
of the lines (their count, 0, is in the table beside the chart).

The same figure twice: Plotly for the report page, matplotlib for a PNG (``save_png``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from collabkit.files import atomic_write_bytes
from collabkit.interpret.charts import plain

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")


def points(groups: list[dict[str, Any]], metric: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(group labels, values, how far the interval reaches below, above) of the groups with a value."""
    keep = [g for g in groups if metric in g and g[metric] == g[metric]]  # NaN: nobody in the group
    values = np.array([g[metric] for g in keep], dtype=np.float64)
    low = np.array([g["intervals"].get(metric, (np.nan, np.nan))[0] for g in keep], dtype=np.float64)
    high = np.array([g["intervals"].get(metric, (np.nan, np.nan))[1] for g in keep], dtype=np.float64)
    return [g["group"] for g in keep], values, np.nan_to_num(values - low), np.nan_to_num(high - values)


def figure(rows: list[dict[str, Any]], metrics: list[str], by: str) -> go.Figure:
    """Plotly: a panel per metric; ``rows`` are compare's rows (model, groups)."""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[plain(m) for m in metrics])
    for n, row in enumerate(rows):
        colour = COLOURS[n % len(COLOURS)]
        for col, metric in enumerate(metrics, start=1):
            labels, values, below, above = points(row["groups"], metric)
            fig.add_scatter(
                x=labels, y=values, mode="lines+markers", name=plain(row["model"]), legendgroup=str(n),
                showlegend=col == 1, line_color=colour,
                error_y={"type": "data", "array": above, "arrayminus": below, "visible": True},
                row=1, col=col,
            )  # fmt: skip
            fig.update_xaxes(title_text=f"training ratings of the {_whose(by)}", row=1, col=col)
    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 50})
    return fig


def save_png(rows: list[dict[str, Any]], metrics: list[str], by: str, path: str | Path, title: str = "") -> Path:
    """The figure as a matplotlib PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), dpi=100, squeeze=False)
    for n, row in enumerate(rows):
        for ax, metric in zip(axes[0], metrics):
            labels, values, below, above = points(row["groups"], metric)
            ax.errorbar(
                labels, values, yerr=[below, above], marker="o", capsize=3,
                color=COLOURS[n % len(COLOURS)], label=row["model"],
            )  # fmt: skip
    for ax, metric in zip(axes[0], metrics):
        ax.set_title(metric)
        ax.set_xlabel(f"training ratings of the {_whose(by)}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _whose(by: str) -> str:
    return "user" if by == "user-activity" else "item"
