"""Learned biases: which items (users) the model rates up or down whatever the taste match.

In score = sigmoid_range(u . i + b_u + b_i) the item bias b_i is what is left of an item's
appeal once taste is accounted for: a low b_i means even people whose taste fits the item tend
not to like it. The chapter asks whether that ranks items differently from their plain mean
rating; ``bias_vs_mean`` answers with a rank correlation and the items they disagree on most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from collabkit.data.interactions import Ratings
from collabkit.evaluate.metrics import rank_correlation
from collabkit.interpret.similar import check_side
from collabkit.models.base import BIASES, CollabModel, require


def bias_table(
    model: CollabModel,
    side: str = "item",
    ratings: Ratings | None = None,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every item's (or user's) bias, highest first: item, [title, genres,] bias[, n_ratings, mean_rating].

    ``ratings`` (the training data) adds each one's rating count and mean rating; ``items``
    metadata adds titles and genres. Ties keep index order.
    """
    check_side(side)
    require(model, BIASES)
    vocab = model.items if side == "item" else model.users
    out = pd.DataFrame({side: vocab.ids})
    if items is not None and side == "item":
        for col in ("title", "genres"):
            if col in items.columns:
                out[col] = items[col].reindex(out["item"]).to_numpy()
    out["bias"] = model.biases(side).double().numpy()
    if ratings is not None:
        stats = ratings.frame.groupby(side)["rating"].agg(["size", "mean"])
        out["n_ratings"] = stats["size"].reindex(out[side]).fillna(0).astype(np.int64).to_numpy()
        out["mean_rating"] = stats["mean"].reindex(out[side]).to_numpy()
    return out.sort_values("bias", ascending=False, kind="stable").reset_index(drop=True)


@dataclass
class BiasVsMean:
    """Does ranking by learned bias agree with ranking by mean rating?"""

    spearman: float  # rank correlation over the compared items (1 = same order)
    n_items: int  # items with at least min_ratings ratings
    min_ratings: int
    disagreements: pd.DataFrame  # biggest |rank_gap| first; rank_gap = mean_rank - bias_rank

    def to_json(self) -> dict:
        return {
            "spearman": self.spearman,
            "n_items": self.n_items,
            "min_ratings": self.min_ratings,
            "disagreements": self.disagreements.to_dict(orient="records"),
        }


def bias_vs_mean(table: pd.DataFrame, min_ratings: int = 20, n: int = 10) -> BiasVsMean:
    """Spearman correlation of bias rank vs mean-rating rank, and the ``n`` largest disagreements.

    Only rows of ``bias_table(..., ratings=...)`` with >= ``min_ratings`` ratings count: a mean of
    a handful of ratings is mostly noise. Ranks are 1 = highest (ties averaged); spearman is the
    Pearson correlation of the two rank vectors. rank_gap > 0: the model ranks the item higher
    than its mean rating does (its raters are harsher than average, or the mean is pulled down
    by people whose taste doesn't fit it).
    """
    if "mean_rating" not in table.columns:
        raise ValueError(
            "bias_vs_mean needs rating counts and means: build the table with ratings=..."
        )
    t = table[table["n_ratings"] >= min_ratings].copy()
    if len(t) < 3:
        raise ValueError(
            f"only {len(t)} rows have >= {min_ratings} ratings; need 3 to compare rankings"
        )
    t["bias_rank"] = t["bias"].rank(ascending=False)
    t["mean_rank"] = t["mean_rating"].rank(ascending=False)
    rho = rank_correlation(t["bias"], t["mean_rating"])
    t["rank_gap"] = t["mean_rank"] - t["bias_rank"]
    order = t["rank_gap"].abs().sort_values(ascending=False, kind="stable").index
    return BiasVsMean(rho, len(t), min_ratings, t.loc[order].head(n).reset_index(drop=True))
