"""Are the probabilities honest? Log-loss and calibration of a model's rating distributions.

For a model with the PROBA capability (``predict_proba``: P(r = l_k) per rating level), over N
held-out ratings r_j with predicted distributions p_j::

    log_loss = -(1/N) sum_j log p_j(r_j)
    q_j      = P(r_j >= at) = sum_{l_k >= at} p_j(l_k)          (e.g. "rates it 4 or 5")
    ece      = sum_b (n_b / N) |mean_{j in b} q_j - mean_{j in b} [r_j >= at]|
    brier    = (1/N) sum_j (q_j - [r_j >= at])^2

with the N predictions cut into ``bins`` equal-width bins of q (expected calibration error,
Naeini et al. 2015). ``reliability`` gives the per-bin table the reliability plot draws: a
calibrated model's points lie on the diagonal.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from collabkit.data.interactions import Ratings
from collabkit.models.base import PROBA, CollabModel, require


def reliability(q: np.ndarray, hit: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per bin of predicted probability q: its range, count, mean q and observed frequency of hit."""
    q, hit = np.asarray(q, np.float64), np.asarray(hit, np.float64)
    b = np.minimum((q * bins).astype(np.int64), bins - 1)
    count = np.bincount(b, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame({
            "low": np.arange(bins) / bins,
            "high": np.arange(1, bins + 1) / bins,
            "count": count,
            "predicted": np.bincount(b, q, bins) / count,
            "observed": np.bincount(b, hit, bins) / count,
        })  # fmt: skip
    return table


def expected_calibration_error(q: np.ndarray, hit: np.ndarray, bins: int = 10) -> float:
    """sum_b (n_b / N) |mean q - frequency of hit| over equal-width bins (module docstring)."""
    t = reliability(q, hit, bins)
    t = t[t["count"] > 0]
    return float((t["count"] * (t["predicted"] - t["observed"]).abs()).sum() / t["count"].sum())


def evaluate_proba(
    model: CollabModel, test: Ratings, at: float = 4.0, bins: int = 10, with_predictions: bool = False
) -> Any:
    """log_loss, ece and brier of P(r >= ``at``) on ``test`` (keys say ``at``: ``ece@4``...).

    ``with_predictions``: (metrics, q, hit) instead, for a ``reliability`` table.
    """
    require(model, PROBA)
    if len(test) == 0:
        raise ValueError(f"{test.name}: no ratings to evaluate")
    p = model.predict_proba(test.frame["user"], test.frame["item"]).astype(np.float64)
    levels = np.asarray(model.config.levels, np.float64)
    r = test.frame["rating"].to_numpy(np.float64)
    k = np.abs(r[:, None] - levels[None, :]).argmin(1)  # nearest level
    q, hit = p[:, levels >= at].sum(1), (r >= at).astype(np.float64)
    tag = f"{at:g}"
    metrics = {
        "log_loss": float(-np.log(np.clip(p[np.arange(len(r)), k], 1e-12, 1.0)).mean()),
        f"ece@{tag}": expected_calibration_error(q, hit, bins),
        f"brier@{tag}": float(np.mean((q - hit) ** 2)),
    }
    return (metrics, q, hit) if with_predictions else metrics


def save_reliability_png(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """The reliability plot of a ``reliability`` table (matplotlib PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    t = table[table["count"] > 0]
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(5, 6), dpi=100, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="calibrated")
    ax.plot(t["predicted"], t["observed"], marker="o", color="#1f77b4", label="model")
    ax.set_ylabel("observed frequency")
    ax.set_title(title or "Reliability")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    bx.bar((t["low"] + t["high"]) / 2, t["count"], width=(t["high"] - t["low"]) * 0.9, color="#aaa")
    bx.set_xlabel("predicted probability")
    bx.set_ylabel("ratings")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
