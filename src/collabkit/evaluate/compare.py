"""Several models trained and scored on the same split, one row each: the comparison table.

A model spec is a registered kind or preset with optional overrides, written like a call
(``train.build``)::

    "mean"  "bias"  "dot-bias"  "most-popular"  "nn(layers=(100, 50))"  "dot-bias(n_factors=20, epochs=10)"

Each row has ``rmse`` and ``mae`` on the held-out ratings and ranking metrics @k of top-k lists
drawn from the items the user did not rate in training, where the held-out items rated
>= ``relevant_threshold`` (default 4) are the relevant ones (``evaluate.ranking``).

Baselines: ``mean`` (the global mean for everyone: it scores every item the same, so its top-k
is the first k unrated items by index, a floor for the ranking metrics), ``bias`` (user + item
bias only) and ``most-popular``, a ranking-only baseline: its scores are counts, not ratings, so
its rmse/mae are NaN. Like every implicit ranker here it is fitted on the training rows rated
>= ``relevant_threshold`` (the same "liked" the evaluation uses), so it recommends the items
most users liked; a 1-star rating would otherwise vote for an item as much as a 5.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from collabkit.data.interactions import Ratings
from collabkit.evaluate.ranking import RELEVANT_THRESHOLD, evaluate_ranking
from collabkit.evaluate.rating import evaluate_ratings
from collabkit.models.base import RATINGS, CollabModel, supports
from collabkit.train.build import ModelSpec, build_model

BASELINES = ("mean", "bias", "most-popular")


def evaluate_model(
    model: CollabModel,
    train: Ratings,
    test: Ratings,
    k: int = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
) -> dict[str, float]:
    """rmse, mae (NaN for ranking-only models) and the ranking metrics @k of a trained model."""
    if not supports(model, RATINGS):
        rating = {"rmse": np.nan, "mae": np.nan}
    else:
        rating = evaluate_ratings(model, test)
    ranking = evaluate_ranking(model, train, test, k, relevant_threshold)
    names = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage", "novelty")
    return {
        "rmse": rating["rmse"],
        "mae": rating["mae"],
        **{f"{n}@{k}": ranking[f"{n}@{k}"] for n in names},
    }


def compare(
    specs: Iterable[str | ModelSpec],
    train: Ratings,
    test: Ratings,
    k: int = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
    seed: int = 42,
) -> pd.DataFrame:
    """One row per spec, in order: model, rmse, mae, ranking metrics @k, fit_seconds, predicts_ratings
    (False for a ranking-only model, whose rmse and mae are NaN).

    Every model is built by ``build_model`` on ``train`` with the same seed (each with its
    kind's recipe unless the spec overrides it) and scored on ``test``; see the module docstring.
    """
    specs = [ModelSpec.parse(s) for s in specs]  # parse all first: a typo fails before training
    if not specs:
        raise ValueError("compare needs at least one model spec, e.g. ['mean', 'bias', 'dot-bias']")
    rows = []
    for spec in specs:
        model, history = build_model(spec, train, seed=seed, threshold=relevant_threshold)
        metrics = evaluate_model(model, train, test, k, relevant_threshold)
        rows.append({"model": spec.name, **metrics, "fit_seconds": history.fit_seconds, "predicts_ratings": supports(model, RATINGS)})
    return pd.DataFrame(rows)
