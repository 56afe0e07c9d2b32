"""Cross-validation: one model spec trained and scored on k folds, summarised as mean ± std.

Folds are either seeded random k-fold over the rows (``split.kfold``: every rating is held out
exactly once) or given explicitly, e.g. GroupLens's canonical ML-100k folds u1..u5
(``canonical_folds``). Each fold is scored like one row of ``compare``. The mean over folds has a
95% bootstrap interval over users (``evaluate.uncertainty``): a resample draws users, and every
fold's metric is recomputed on the drawn users it has before the folds are averaged. The std
over folds measures how much a fold moves the number; the interval, how much the users do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from collabkit.data.interactions import Ratings
from collabkit.data.split import kfold
from collabkit.evaluate.compare import columns
from collabkit.evaluate.ranking import RELEVANT_THRESHOLD
from collabkit.evaluate.scores import outcome
from collabkit.evaluate.uncertainty import N_RESAMPLES, PerUser, intervals
from collabkit.train.build import ModelSpec, build_model


@dataclass
class CrossValidation:
    """Per-fold metrics and their summary (std is the sample std over folds, ddof=1)."""

    model: str
    folds: pd.DataFrame  # one row per fold: fold, rmse, mae, ranking metrics, fit_seconds
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # of the mean

    @property
    def summary(self) -> pd.DataFrame:
        """Index: metric; columns: mean, std (NaN for a single fold), low and high (the 95%
        interval of the mean over users; NaN for what has none)."""
        values = self.folds.drop(columns="fold")
        nan = (np.nan, np.nan)
        return pd.DataFrame({
            "mean": values.mean(), "std": values.std(ddof=1),
            "low": [self.intervals.get(m, nan)[0] for m in values.columns],
            "high": [self.intervals.get(m, nan)[1] for m in values.columns],
        })  # fmt: skip

    def to_json(self) -> dict:
        """{model, n_folds, mean: {metric: value}, std: {...}, intervals: {metric: [low, high]},
        folds: [{...}, ...]}."""
        s = self.summary
        return {
            "model": self.model,
            "n_folds": len(self.folds),
            "mean": s["mean"].to_dict(),
            "std": s["std"].to_dict(),
            "intervals": {m: list(v) for m, v in self.intervals.items()},
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
    n_resamples: int = N_RESAMPLES,
) -> CrossValidation:
    """Train and score ``spec`` on each fold: seeded ``kfold(data, folds, seed)`` or the given ``splits``.

    ``seed`` also seeds every fold's weights and batch order and the bootstrap, so a run is
    reproducible.
    """
    spec = ModelSpec.parse(spec)
    if (data is None) == (splits is None):
        raise ValueError(
            "give exactly one of data (for seeded k-fold) or splits (e.g. canonical_folds())"
        )
    pairs = list(splits) if splits is not None else list(kfold(data, folds, seed))
    if not pairs:
        raise ValueError("splits is empty: nothing to cross-validate")
    rows, per_fold = [], []
    for n, (train, test) in enumerate(pairs, start=1):
        model, history = build_model(spec, train, seed=seed, threshold=relevant_threshold)
        result = outcome(model, train, test, k, relevant_threshold)
        per_user = result.metrics()
        values = {m: v.value() for m, v in per_user.items()} | result.lists_shown()
        rows.append({"fold": n, **{c: values.get(c, np.nan) for c in columns(k)}, "fit_seconds": history.fit_seconds})
        per_fold.append((result.users, per_user))
    return CrossValidation(spec.name, pd.DataFrame(rows), intervals(stack_folds(per_fold), n_resamples, seed=seed))


def stack_folds(per_fold: list[tuple[np.ndarray, dict[str, PerUser]]]) -> dict[str, PerUser]:
    """Each fold's per-user metrics (over its own test users) as one (G, U) metric over the union
    of the users, a user absent from a fold counting 0 there; metrics some fold lacks are left out."""
    users = pd.Index(np.unique(np.concatenate([u for u, _ in per_fold])))
    names = [m for m in per_fold[0][1] if all(m in f for _, f in per_fold)]
    out = {}
    for name in names:
        num, den = np.zeros((len(per_fold), len(users))), np.zeros((len(per_fold), len(users)))
        for g, (fold_users, metrics) in enumerate(per_fold):
            at = users.get_indexer(fold_users)
            num[g, at], den[g, at] = metrics[name].num[0], metrics[name].den[0]
        out[name] = PerUser(num, den, per_fold[0][1][name].root)
    return out
