"""Cross-validation: one model spec trained and scored on k folds, summarised as mean ± std.

Folds are either seeded random k-fold over the rows (``split.kfold``: every rating is held out
exactly once) or given explicitly, e.g. GroupLens's canonical ML-100k folds u1..u5
(``canonical_folds``). Each fold is scored like one row of ``compare``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from collabkit.data.interactions import Ratings
from collabkit.data.split import kfold
from collabkit.evaluate.compare import evaluate_model
from collabkit.evaluate.ranking import RELEVANT_THRESHOLD
from collabkit.train.build import ModelSpec, build_model


@dataclass
class CrossValidation:
    """Per-fold metrics and their summary (std is the sample std over folds, ddof=1)."""

    model: str
    folds: pd.DataFrame  # one row per fold: fold, rmse, mae, ranking metrics, fit_seconds

    @property
    def summary(self) -> pd.DataFrame:
        """Index: metric; columns: mean, std (NaN for a single fold)."""
        values = self.folds.drop(columns="fold")
        return pd.DataFrame({"mean": values.mean(), "std": values.std(ddof=1)})

    def to_json(self) -> dict:
        """{model, n_folds, mean: {metric: value}, std: {...}, folds: [{...}, ...]}."""
        s = self.summary
        return {
            "model": self.model,
            "n_folds": len(self.folds),
            "mean": s["mean"].to_dict(),
            "std": s["std"].to_dict(),
            "folds": self.folds.to_dict(orient="records"),
        }


def canonical_folds(
    name: str = "ml-100k", data_dir: str | Path | None = None
) -> list[tuple[Ratings, Ratings]]:
    """GroupLens's five ML-100k folds u1..u5 as (train, test) pairs: disjoint tests covering every rating."""
    from collabkit.data.movielens import canonical_split

    return [canonical_split(f"u{n}", name=name, data_dir=data_dir) for n in range(1, 6)]


def cross_validate(
    spec: str | ModelSpec,
    data: Ratings | None = None,
    folds: int = 5,
    seed: int = 42,
    splits: Iterable[tuple[Ratings, Ratings]] | None = None,
    k: int = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
) -> CrossValidation:
    """Train and score ``spec`` on each fold: seeded ``kfold(data, folds, seed)`` or the given ``splits``.

    ``seed`` also seeds every fold's weights and batch order, so a run is reproducible.
    """
    spec = ModelSpec.parse(spec)
    if (data is None) == (splits is None):
        raise ValueError(
            "give exactly one of data (for seeded k-fold) or splits (e.g. canonical_folds())"
        )
    pairs = list(splits) if splits is not None else list(kfold(data, folds, seed))
    if not pairs:
        raise ValueError("splits is empty: nothing to cross-validate")
    rows = []
    for n, (train, test) in enumerate(pairs, start=1):
        model, history = build_model(spec, train, seed=seed, threshold=relevant_threshold)
        metrics = evaluate_model(model, train, test, k, relevant_threshold)
        rows.append({"fold": n, **metrics, "fit_seconds": history.fit_seconds})
    return CrossValidation(spec.name, pd.DataFrame(rows))
