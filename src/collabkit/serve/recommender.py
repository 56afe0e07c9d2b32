"""What the recommendation endpoints compute, from a loaded model and the user's stored ratings.

Three ways to place a user, named in every response (``mode``):
- ``model``: the live model knows the user and nothing they rated came after its training;
- ``fold-in``: the user is new to the model or rated after it was trained: their stored ratings
  are folded in at request time (``recommend_new_users``), no retraining needed;
- ``average-taste``: no usable ratings at all: the average-taste user's list (the fallback).
Items the user rated in the store are never recommended back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from sqlalchemy.orm import Session

from collabkit.checkpoint import load_items, load_model
from collabkit.data.interactions import Ratings
from collabkit.interpret.similar import similar_items
from collabkit.models.base import CollabModel
from collabkit.models.linear import UserPrior
from collabkit.recommend import Questionnaire, recommend, recommend_new_users
from collabkit.serve import store

N_QUESTIONS = 50  # onboarding questions kept per model version


@dataclass(frozen=True)
class Served:
    """A model version ready to answer: weights, item metadata, fold-in prior, first questions."""

    version: int
    path: str
    model: CollabModel
    items: pd.DataFrame | None
    prior: UserPrior
    trained_through: float
    questions: list[Any] = field(default_factory=list)
    # the API's string ids -> the model's raw ids (ints for MovieLens): one dict lookup per id
    # instead of the vocabulary's string coercion on every request
    user_ids: dict[str, Any] = field(default_factory=dict)
    item_ids: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> tuple[float, float] | None:
        s = self.model.meta.get("scale")
        return None if s is None else (float(s[0]), float(s[1]))


def load_served(version: store.ModelVersion, session: Session) -> Served:
    """Load a version's folder; the store's ratings give item popularity and the prior's calibration."""
    torch.set_num_threads(1)  # many small requests in parallel beat one request on many threads
    model = load_model(version.path)
    frame = store.all_ratings(session)
    ratings = Ratings(frame[["user", "item", "rating"]]) if len(frame) else None
    prior = model.user_prior(ratings)
    quiz = Questionnaire(model, ratings, prior)
    questions = []
    for _ in range(min(N_QUESTIONS, len(model.items))):
        item = quiz.next_item()
        if item is None:
            break
        questions.append(item)
        quiz.answer(item, None)  # skipped: the next question is the next most informative
    return Served(
        version.id, version.path, model, load_items(version.path), prior,
        version.trained_through, questions, _id_map(model.users.ids), _id_map(model.items.ids),
    )  # fmt: skip


def _id_map(ids: np.ndarray) -> dict[str, Any]:
    return {str(i): i.item() if hasattr(i, "item") else i for i in ids}


@torch.no_grad()
def for_user(served: Served, user: str, stored: pd.DataFrame, n: int) -> tuple[str, pd.DataFrame]:
    """(mode, frame item, score, title?, because) for a user with stored ratings item, rating, written_at."""
    model = served.model
    raw = stored["item"].map(served.item_ids)
    known = stored[raw.notna()].assign(item=raw[raw.notna()].to_numpy(dtype=model.items.ids.dtype))
    raw_user = served.user_ids.get(user)
    if raw_user is not None and not (stored["written_at"] > served.trained_through).any():
        seen = Ratings(known.assign(user=raw_user)[["user", "item", "rating"]], scale=served.scale)
        recs = recommend(model, seen, [raw_user], n, items=served.items)
        return "model", recs
    if len(known):
        answers = known[["item", "rating"]].assign(user=user)
        recs = recommend_new_users(
            model, answers, n, prior=served.prior, items=served.items, user=user
        )
        return "fold-in", recs
    return "average-taste", average_taste(served, n)


def average_taste(served: Served, n: int) -> pd.DataFrame:
    """The fallback list: the average-taste user's top ``n``."""
    return recommend(
        served.model, None, ["\x00new"], n, exclude_seen=False, unknown="fallback",
        prior=served.prior, items=served.items,
    )  # fmt: skip


@torch.no_grad()
def for_answers(served: Served, user: str, answers: pd.DataFrame, n: int) -> pd.DataFrame:
    """A new user's list from onboarding answers (item, rating) folded in."""
    return recommend_new_users(
        served.model,
        answers.assign(user=user),
        n,
        prior=served.prior,
        items=served.items,
        user=user,
    )


def unknown_items(served: Served, items: list[str]) -> list[int]:
    """Positions of ``items`` the model does not know."""
    idx = served.model.items.lookup(np.asarray(items, dtype=object), strict=False)
    return [int(k) for k in np.flatnonzero(idx < 0)]


@torch.no_grad()
def similar(served: Served, item: str, k: int) -> pd.DataFrame:
    """Nearest items by factor cosine; raises TitleNotFoundError (an UnknownIdError) for unknown ids."""
    return similar_items(served.model, item, k, items=served.items)


def titles(served: Served, ids: list[Any]) -> list[str | None]:
    if served.items is None or "title" not in served.items.columns:
        return [None] * len(ids)
    t = served.items["title"].reindex(ids)
    return [None if pd.isna(x) else str(x) for x in t]
