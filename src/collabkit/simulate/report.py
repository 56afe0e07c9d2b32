"""Runs side by side: a start/end summary per run and each metric over rounds as PNG and HTML.

The PNG is matplotlib; the HTML page draws the same panels with Plotly (hover for values, click a
run in the legend to hide it in every panel), its JavaScript inline so the page works offline.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from collabkit.files import atomic_write_bytes, atomic_write_text
from collabkit.interpret.charts import figure_html, html_page, plain, table_html

# metric -> what its plot is titled
PLOTTED = {
    "fav_share_majority": "minority favourites' share of majority lists",
    "gini": "Gini of item exposure (every list)",
    "gini_majority": "Gini of item exposure (majority lists)",
    "top1_share_majority": "exposure share of the top 1% of items (majority lists)",
    "gini_cumulative": "Gini of exposure since round 0",
    "coverage": "catalogue coverage",
    "utility_majority": "majority utility (mean true rating consumed)",
    "utility_minority": "minority utility",
    "jaccard": "homogenisation (mean Jaccard of lists)",
    "top5_signal": "training signal from the top 5% users",
    "rmse": "RMSE against the ground truth",
    "ndcg_truth": "NDCG@10 of the lists against the ground truth",
    "popularity_corr": "rank correlation of item scores with log popularity",
    "majority_users": "majority users still here",
    "minority_users": "minority users",
}
EDGE = 3  # rounds averaged for "start" and for "end"


def summarise(metrics: pd.DataFrame, edge: int = EDGE) -> dict[str, float]:
    """Start (mean of the first ``edge`` rounds), end (the last ``edge``) and rise of the key metrics.

    Also each metric's mean over all rounds (``*_mean``): majority utility is compared that way.
    """
    out: dict[str, float] = {"rounds": len(metrics)}
    for col in (
        "fav_share_majority",
        "gini",
        "gini_majority",
        "top1_share",
        "top1_share_majority",
        "gini_cumulative",
        "utility_majority",
        "utility_minority",
        "jaccard",
        "coverage",
        "top5_signal",
        "rmse",
        "ndcg_truth",
        "popularity_corr",
    ):
        start, end = float(metrics[col].head(edge).mean()), float(metrics[col].tail(edge).mean())
        out[f"{col}_start"], out[f"{col}_end"] = start, end
        out[f"{col}_rise"] = end - start
        out[f"{col}_mean"] = float(metrics[col].mean())
    out["majority_users_end"] = int(metrics["majority_users"].iloc[-1])
    out["minority_users_end"] = int(metrics["minority_users"].iloc[-1])
    out["seconds"] = float(metrics["fit_seconds"].sum())
    return out


def figure_png(runs: dict[str, pd.DataFrame]) -> bytes:
    """One panel per metric, one line per run, rounds on x; returns the PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2
    rows = int(np.ceil(len(PLOTTED) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.6 * rows), squeeze=False)
    for ax, (metric, title) in zip(axes.flat, PLOTTED.items()):
        for name, frame in runs.items():
            ax.plot(frame["round"], frame[metric], label=name, lw=1.4)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(PLOTTED) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("round", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_png(runs: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Write the figure as a PNG."""
    atomic_write_bytes(path, figure_png(runs))


def figure(runs: dict[str, pd.DataFrame]) -> go.Figure:
    """The panels of ``figure_png`` as one interactive Plotly figure.

    One legend group per run, so a click on a run's name hides it in every panel; run names are
    escaped for Plotly (which reads tags such as <a> in them).
    """
    cols = 2
    rows = int(np.ceil(len(PLOTTED) / cols))
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(PLOTTED.values()),
        vertical_spacing=0.3 / rows,
        horizontal_spacing=0.08,
    )
    palette = fig.layout.template.layout.colorway or (None,)
    for j, (name, frame) in enumerate(runs.items()):
        label = plain(name)
        for k, metric in enumerate(PLOTTED):
            fig.add_scatter(
                x=frame["round"],
                y=frame[metric],
                name=label,
                legendgroup=label,
                showlegend=k == 0,
                mode="lines",
                line={"color": palette[j % len(palette)]},
                hovertemplate=f"{label}<br>round %{{x}}: %{{y:.4g}}<extra></extra>",
                row=k // cols + 1,
                col=k % cols + 1,
            )
    fig.update_layout(margin={"t": 40, "b": 40})
    fig.update_annotations(font_size=12)
    fig.update_xaxes(title_text="round", row=rows)
    return fig


def write_html(runs: dict[str, pd.DataFrame], path: str | Path, title: str = "Feedback loop") -> None:
    """A self-contained page (``interpret.charts``): the interactive figure, a summary table and
    each run's rounds; text from the runs is escaped, Plotly's JavaScript is inline."""
    summary = pd.DataFrame({name: summarise(frame) for name, frame in runs.items()}).T
    rows = int(np.ceil(len(PLOTTED) / 2))
    parts = [
        figure_html(figure(runs), "rounds", height=260 * rows),
        "<h2>Start (first rounds) and end (last rounds)</h2>",
        table_html(summary.rename_axis("run").reset_index()),
    ]
    for name, frame in runs.items():
        parts += [f"<h2>{html.escape(name)}</h2>", table_html(frame)]
    atomic_write_text(path, html_page(title, "\n".join(parts)))


