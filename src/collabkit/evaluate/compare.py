"""Several models trained and scored on the same split, one row each: the comparison table.

A model spec is a registered kind with optional overrides, written like a call::

    "mean"  "bias"  "dot-bias"  "most-popular"  "nn(layers=(100, 50))"  "dot-bias(n_factors=20, epochs=10)"

Names of the model's config (``n_factors``, ``layers``...) go to ``Model.from_data``; the
training names ``epochs``, ``lr_max``, ``wd``, ``bs`` override the recipe, by default the
fastai chapter's ``fit_one_cycle(epochs=5, lr_max=5e-3, wd=0.1)``. Kinds with their own ``fit``
(implicit rankers, AutoRec, Bayesian MF) use it instead, configured through their config.

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

import ast
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from collabkit.data.implicit import to_implicit
from collabkit.data.interactions import Ratings
from collabkit.evaluate.ranking import RELEVANT_THRESHOLD, evaluate_ranking
from collabkit.evaluate.rating import evaluate_ratings

# importing a model module registers its kinds, so every registered kind can be compared
from collabkit.models import autorec, bayes, dot, hybrid, implicit, neural, svdpp  # noqa: F401
from collabkit.models.base import CollabModel, get_model_class
from collabkit.train.loop import fit_one_cycle

TRAIN_KEYS = ("epochs", "lr_max", "wd", "bs")  # spec overrides that go to fit_one_cycle
BASELINES = ("mean", "bias", "most-popular")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a comparison: its registered kind, config overrides and training overrides."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)  # -> Model.from_data(train, **config)
    train: dict[str, Any] = field(default_factory=dict)  # -> fit_one_cycle(..., **train)
    label: str = ""  # the name of its row; default: the text it was parsed from

    @property
    def name(self) -> str:
        return self.label or self.kind

    @classmethod
    def parse(cls, text: str | ModelSpec) -> ModelSpec:
        """'kind' or 'kind(name=value, ...)' with Python literal values -> ModelSpec."""
        if isinstance(text, ModelSpec):
            return text
        text = text.strip()
        kind, _, rest = text.partition("(")
        kind = kind.strip()
        kw: dict[str, Any] = {}
        if rest:
            try:
                call = ast.parse(f"f({rest}", mode="eval").body
                if not isinstance(call, ast.Call) or call.args:
                    raise SyntaxError("only name=value arguments")
                kw = {a.arg: ast.literal_eval(a.value) for a in call.keywords}
            except (SyntaxError, ValueError) as e:
                raise ValueError(
                    f"bad model spec {text!r}: write kind(name=value, ...), e.g. dot-bias(n_factors=20) ({e})"
                ) from None
        names = {f.name for f in fields(get_model_class(kind).Config)}  # unknown kinds fail here
        unknown = sorted(set(kw) - names - set(TRAIN_KEYS))
        if unknown:
            raise ValueError(
                f"bad model spec {text!r}: {kind} has no option {', '.join(unknown)}; its config: "
                f"{', '.join(sorted(names))}; training: {', '.join(TRAIN_KEYS)}"
            )
        # a name the model's config defines is config (AutoRec has its own epochs), else training
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items() if k in names}
        train = {k: v for k, v in kw.items() if k not in names}
        return cls(kind, config, train, label=text)


def split_specs(text: str) -> list[str]:
    """'mean,bias,nn(layers=(100, 50))' -> ['mean', 'bias', 'nn(layers=(100, 50))']: commas outside brackets."""
    parts, depth, start = [], 0, 0
    for pos, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:pos])
            start = pos + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def fit_spec(
    spec: str | ModelSpec,
    train: Ratings,
    epochs: int = 5,
    lr_max: float = 5e-3,
    wd: float = 0.1,
    seed: int = 42,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
) -> tuple[CollabModel, float]:
    """Build ``spec`` on ``train``'s users and items and train it; returns (model, fit seconds)."""
    spec = ModelSpec.parse(spec)
    model = get_model_class(spec.kind).from_data(train, **{"seed": seed, **spec.config})
    own_fit = hasattr(model, "fit")
    if own_fit and spec.train:
        raise ValueError(
            f"{spec.name}: {spec.kind} trains with its own fit(), not the one-cycle recipe, so "
            f"{', '.join(spec.train)} don't apply"
        )
    t0 = time.perf_counter()
    if model.meta.get("implicit"):
        model.fit(to_implicit(train, threshold=relevant_threshold))
    elif own_fit:
        model.fit(train)
    else:
        recipe = {"epochs": epochs, "lr_max": lr_max, "wd": wd, **spec.train}
        fit_one_cycle(model, train, seed=seed, progress=False, **recipe)
    seconds = time.perf_counter() - t0
    model.eval()
    return model, seconds


def evaluate_model(
    model: CollabModel,
    train: Ratings,
    test: Ratings,
    k: int = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
) -> dict[str, float]:
    """rmse, mae (NaN for ranking-only models) and the ranking metrics @k of a trained model."""
    if model.meta.get("implicit"):
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
    epochs: int = 5,
    lr_max: float = 5e-3,
    wd: float = 0.1,
    seed: int = 42,
) -> pd.DataFrame:
    """One row per spec, in order: model, rmse, mae, ranking metrics @k, fit_seconds.

    Every model is trained on ``train`` with the same seed and recipe (specs may override it)
    and scored on ``test``; see the module docstring for what each column measures.
    """
    specs = [ModelSpec.parse(s) for s in specs]  # parse all first: a typo fails before training
    if not specs:
        raise ValueError("compare needs at least one model spec, e.g. ['mean', 'bias', 'dot-bias']")
    rows = []
    for spec in specs:
        model, seconds = fit_spec(spec, train, epochs, lr_max, wd, seed, relevant_threshold)
        metrics = evaluate_model(model, train, test, k, relevant_threshold)
        rows.append({"model": spec.name, **metrics, "fit_seconds": seconds})
    return pd.DataFrame(rows)
