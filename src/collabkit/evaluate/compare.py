"""Several models trained and scored on the same split, one row each: the comparison table.

A model spec is a registered kind or preset with optional overrides, written like a call
(``train.build``)::

    "mean"  "bias"  "dot-bias"  "most-popular"  "nn(layers=(100, 50))"  "dot-bias(n_factors=20, epochs=10)"

Each row has ``rmse`` and ``mae`` on the held-out ratings and ranking metrics @k of top-k lists
drawn from the items the user did not rate in training, where the held-out items rated
>= ``relevant_threshold`` (default 4) are the relevant ones (``evaluate.ranking``), beside what
the lists are made of: catalogue coverage, the Gini of the items' appearances, and how popular the
items are (novelty, ARP, APLT; ``evaluate.exposure``).

Every per-user number comes with a 95% bootstrap interval over the test users, and every model is
tested against a ``baseline`` with a paired bootstrap over the same users (``evaluate.uncertainty``):
the difference, its interval and its p-value. Coverage and Gini describe all the lists together
and have neither. Only full rankings are scored: sampled metrics (rank the held-out item among
100 random ones) are not offered, because they can order models differently from the full
ranking they stand for (Krichene & Rendle, KDD 2020).

Baselines: ``mean`` (the global mean for everyone: it scores every item the same, so its top-k
is the first k unrated items by index, a floor for the ranking metrics), ``bias`` (user + item
bias only) and ``most-popular``, a ranking-only baseline: its scores are counts, not ratings, so
its rmse/mae are NaN. Like every implicit ranker here it is fitted on the training rows rated
>= ``relevant_threshold`` (the same "liked" the evaluation uses), so it recommends the items
most users liked; a 1-star rating would otherwise vote for an item as much as a 5.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from collabkit.data.implicit import to_implicit
from collabkit.data.interactions import Ratings
from collabkit.data.split import heldout_users
from collabkit.evaluate.groups import by_group, check_by
from collabkit.evaluate.heldout import heldout_metrics, heldout_outcome, metric_names
from collabkit.evaluate.ranking import RELEVANT_THRESHOLD
from collabkit.evaluate.scores import Outcome, outcome
from collabkit.evaluate.uncertainty import (
    LEVEL,
    N_RESAMPLES,
    PerUser,
    bootstrap_distribution,
    difference,
    interval,
)
from collabkit.models.base import RATINGS, CollabModel, supports
from collabkit.train.build import ModelSpec, build_model

BASELINES = ("mean", "bias", "most-popular")
#: the metrics of a row, in table order (rmse and mae only for models that predict ratings)
COLUMNS = (
    "rmse", "mae", "precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage", "gini",
    "novelty", "arp", "aplt",
)  # fmt: skip
#: of those, the ones that describe all the lists together: no per-user interval or test
WHOLE_LISTS = ("coverage", "gini")


def columns(k: int) -> list[str]:
    """The metric columns of a row: rmse, mae, then the rest @k."""
    return [c if c in ("rmse", "mae") else f"{c}@{k}" for c in COLUMNS]


def evaluate_model(
    model: CollabModel,
    train: Ratings,
    test: Ratings,
    k: int = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
) -> dict[str, float]:
    """rmse, mae (NaN for ranking-only models), the ranking metrics @k and what the lists are
    made of (coverage, gini, novelty, arp, aplt @k) of a trained model."""
    result = outcome(model, train, test, k, relevant_threshold)
    values = {n: m.value() for n, m in result.metrics().items()} | result.lists_shown()
    return {c: values.get(c, np.nan) for c in columns(k)}


@dataclass
class Comparison:
    """``compare``'s result: one row per model with its metrics, intervals, the paired test against
    the baseline (``vs_baseline``, {metric: Difference}) and the groups (``groups``)."""

    rows: list[dict[str, Any]]
    metrics: list[str]  # the metric columns, in order
    baseline: str | None = None
    by: str | None = None
    level: float = LEVEL

    @property
    def table(self) -> pd.DataFrame:
        """One row per model: model, the metric values, fit_seconds, predicts_ratings."""
        keep = ["model", *self.metrics, "fit_seconds", "predicts_ratings"]
        return pd.DataFrame([{c: r[c] for c in keep} for r in self.rows])

    def to_json(self) -> list[dict[str, Any]]:
        """The rows as plain data (a ranking-only model's rmse and mae are null, not NaN)."""
        out = []
        for r in self.rows:
            row = {**r, "intervals": _lists(r["intervals"])}
            if not r["predicts_ratings"] and "rmse" in row:
                row.update(rmse=None, mae=None)
            if "vs_baseline" in r:
                row["vs_baseline"] = {m: d.to_json() for m, d in r["vs_baseline"].items()}
            if "groups" in r:
                row["groups"] = [{**g, "intervals": _lists(g["intervals"])} for g in r["groups"]]
            out.append(row)
        return out


def _lists(intervals: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
    return {m: list(v) for m, v in intervals.items()}


def compare(
    specs: Iterable[str | ModelSpec],
    train: Ratings,
    test: Ratings,
    k: int = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
    seed: int = 42,
    baseline: str | ModelSpec | None = None,
    by: str | None = None,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
) -> Comparison:
    """Train every spec on ``train`` (same seed, each with its kind's recipe unless the spec
    overrides it) and score it on ``test`` (see the module docstring).

    Each row has its metrics, their bootstrap intervals over the test users (``n_resamples``
    resamples seeded with ``seed``; 0: none), and, for every model but ``baseline`` (one of the
    specs), the paired test of each metric against it. ``by`` adds the rows by group
    (``evaluate.groups``).
    """
    specs = [ModelSpec.parse(s) for s in specs]  # parse all first: a typo fails before training
    if not specs:
        raise ValueError("compare needs at least one model spec, e.g. ['mean', 'bias', 'dot-bias']")
    base = _baseline(specs, baseline)
    check_by(by)
    models = {}
    for spec in specs:
        model, history = build_model(spec, train, seed=seed, threshold=relevant_threshold)
        models[spec.name] = (model, history.fit_seconds)
    return compare_trained(models, train, test, k, relevant_threshold, seed, base, by, n_resamples, level)


def compare_trained(
    models: dict[str, tuple[CollabModel, float]],
    train: Ratings,
    test: Ratings,
    k: int = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
    seed: int = 42,
    baseline: str | None = None,
    by: str | None = None,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
) -> Comparison:
    """``compare`` for models already trained: {name: (model, fit_seconds)}; ``baseline`` names one."""
    if baseline is not None and baseline not in models:
        raise ValueError(f"the baseline {baseline!r} is not one of the models compared: {', '.join(models)}")
    check_by(by)
    results = {
        name: (outcome(model, train, test, k, relevant_threshold), seconds, supports(model, RATINGS))
        for name, (model, seconds) in models.items()
    }
    rows = _rows(results, lambda r: r.metrics(), lambda r: r.lists_shown(), columns(k), baseline, n_resamples, level, seed)
    for row, (result, _, _) in zip(rows, results.values()):
        if by is not None:
            row["groups"] = by_group(result, by, n_resamples, level, seed)
    return Comparison(rows, columns(k), baseline, by, level)


def compare_heldout(
    specs: Iterable[str | ModelSpec],
    data: Ratings,
    n_users: int | None = None,
    fold_in: float = 0.8,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
    seed: int = 42,
    baseline: str | ModelSpec | None = None,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
) -> Comparison:
    """``compare`` under strong generalisation (``evaluate.heldout``): ``n_users`` users held out
    of training (``data.split.heldout_users``), each folded in from ``fold_in`` of their ratings
    and ranked over the whole catalogue; recall@20, recall@50 and ndcg@100 with intervals and
    paired tests. A kind that ranks implicit data folds in from the positives (>=
    ``relevant_threshold``), as it was trained; a rating model from every answer, rating and all.
    """
    specs = [ModelSpec.parse(s) for s in specs]
    if not specs:
        raise ValueError("compare needs at least one model spec, e.g. ['most-popular', 'ease']")
    base = _baseline(specs, baseline)
    train, answers, test = heldout_users(data, n_users, fold_in, seed)
    results = {}
    for spec in specs:
        model, history = build_model(spec, train, seed=seed, threshold=relevant_threshold)
        given = answers
        if relevant_threshold is not None and not supports(model, RATINGS):
            given = to_implicit(answers, relevant_threshold)
        result = heldout_outcome(model, train, given, test, relevant_threshold)
        results[spec.name] = (result, history.fit_seconds, supports(model, RATINGS))
    rows = _rows(results, heldout_metrics, lambda r: {}, metric_names(), base, n_resamples, level, seed)
    for row, (result, _, _) in zip(rows, results.values()):
        row.update(n_heldout_users=len(result.users), n_unknown_answers=result.n_unknown_answers)
    return Comparison(rows, metric_names(), base, None, level)


def _baseline(specs: list[ModelSpec], baseline: str | ModelSpec | None) -> str | None:
    """The baseline's name, which must be one of the specs (checked before anything trains)."""
    if baseline is None:
        return None
    name = ModelSpec.parse(baseline).name
    if name not in [s.name for s in specs]:
        raise ValueError(f"the baseline {name!r} is not one of the models compared: {', '.join(s.name for s in specs)}")
    return name


def _rows(
    results: dict[str, tuple[Outcome, float, bool]],
    metrics: Callable[[Outcome], dict[str, PerUser]],
    whole: Callable[[Outcome], dict[str, float]],
    names: list[str],
    baseline: str | None,
    n_resamples: int,
    level: float,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per model from its outcome: ``metrics`` (per user: values and intervals) and
    ``whole`` (of all the lists: values only), in ``names`` order (NaN where a model has none),
    fit_seconds, predicts_ratings, and the paired test against ``baseline``. Every model is
    resampled on the same draws of the users, once."""
    per_user = {name: metrics(result) for name, (result, _, _) in results.items()}
    flat = {(name, m): pu for name, ms in per_user.items() for m, pu in ms.items()}
    dist = bootstrap_distribution(flat, n_resamples or N_RESAMPLES, seed) if n_resamples or baseline else {}
    rows = []
    for name, (result, seconds, predicts) in results.items():
        values = {m: pu.value() for m, pu in per_user[name].items()} | whole(result)
        spans = {m: interval(dist[(name, m)], pu, level) for m, pu in per_user[name].items()} if n_resamples else {}
        row = {"model": name, **{c: values.get(c, np.nan) for c in names}, "intervals": spans}
        row.update(fit_seconds=seconds, predicts_ratings=predicts)
        if baseline is not None and name != baseline:
            row["vs_baseline"] = {
                m: difference(dist[(name, m)], dist[(baseline, m)], values[m] - per_user[baseline][m].value(), level)
                for m in per_user[name] if m in per_user[baseline]
            }
        rows.append(row)
    return rows
