"""A model's outcome on a test set, kept per user: what every metric, interval and group is computed from.

``outcome(model, train, test, k)`` runs the model once: a prediction for every held-out rating (a
model that predicts ratings) and a top-k list for every test user with a relevant held-out item
(rating >= ``relevant_threshold``; None: every held-out item). ``Outcome.metrics`` turns that into
``PerUser`` metrics (``evaluate.uncertainty``) over the sorted test users, so they can be averaged,
resampled and compared user by user, optionally for a group of users or of items.

Nothing is dropped, as in ``evaluate.ranking`` and ``evaluate.rating``: an unknown user is scored by
the model's fallback, an unknown relevant item stays relevant (a guaranteed miss), a rating of an
unknown user or item is predicted by the baseline fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from collabkit.core.loop import encode
from collabkit.data.interactions import Ratings
from collabkit.evaluate import exposure
from collabkit.evaluate.metrics import per_user_ranking_metrics
from collabkit.evaluate.ranking import RELEVANT_THRESHOLD, item_popularity
from collabkit.evaluate.uncertainty import PerUser
from collabkit.models.base import RATINGS, CollabModel, supports
from collabkit.recommend.topn import seen_csr, top_n

#: per-user ranking metrics, means over the users with a relevant item
RANKING = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
#: what a list is made of, means over the same users
POPULARITY = ("novelty", "arp", "aplt")


@dataclass
class Outcome:
    """What a model produced for the users of one test set, one row per user in ``users`` order."""

    users: np.ndarray  # (U,) raw ids of the test users, sorted
    user_counts: np.ndarray  # (U,) their training ratings (0: unknown to the model's training)
    lists: np.ndarray  # (U, L) top-L model item indices, -1 padded (all -1 for users not ranked)
    relevant: tuple[np.ndarray, np.ndarray]  # CSR over the U users of relevant item indices
    popularity: np.ndarray  # (n_items,) training ratings of each model item
    held: pd.DataFrame  # one row per held-out rating: user (row), item_count (training), error
    predicts_ratings: bool = True  # False: no rating predictions (error is NaN), no rmse/mae
    n_unknown_users: int = 0  # ranked users the model never saw (scored by its fallback)
    n_unknown_answers: int = 0  # fold-in answers about items the model never saw (not usable)

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    def ranking(self, k: int, counts: tuple[float, float] | None = None) -> pd.DataFrame:
        """Per-user ranking metrics @k (``per_user_ranking_metrics``), one row per user with a
        relevant item; with ``counts`` (lo, hi) only the relevant items with lo..hi training
        ratings count (an unknown item has 0)."""
        indptr, rel = self.relevant
        if counts is not None:
            owner = np.repeat(np.arange(len(self.users)), np.diff(indptr))
            pop = np.r_[self.popularity, np.zeros(max(0, int(rel.max(initial=-1)) + 1 - self.n_items))]
            keep = _within(pop[rel], counts)
            rel = rel[keep]
            indptr = np.r_[0, np.cumsum(np.bincount(owner[keep], minlength=len(self.users)))]
        return per_user_ranking_metrics(self.lists, (indptr, rel), k, item_popularity=self.popularity)

    @property
    def k(self) -> int:
        """The length of the lists (0: the users were not ranked)."""
        return self.lists.shape[1]

    def metrics(self, counts: tuple[float, float] | None = None) -> dict[str, PerUser]:
        """Every per-user metric: rmse and mae (models that predict ratings), the ranking metrics
        @k and the popularity of the lists (novelty, arp, aplt @k), k the length of the lists
        (none when 0). With ``counts`` (lo, hi), a
        group of items by training ratings, only the held-out ratings and relevant items of that
        group count, and ``share@k`` (the share of the lists' slots the group holds, over every
        ranked user) replaces the popularity of the lists."""
        out: dict[str, PerUser] = {}
        n_users = len(self.users)
        if self.predicts_ratings:
            rows = self.held
            if counts is not None:
                rows = rows[_within(rows["item_count"].to_numpy(), counts)]
            user, err = rows["user"].to_numpy(), rows["error"].to_numpy(dtype=np.float64)
            n = np.bincount(user, minlength=n_users)
            out["rmse"] = PerUser(np.bincount(user, err * err, n_users), n, root=True)
            out["mae"] = PerUser(np.bincount(user, np.abs(err), n_users), n)
        if not self.k:
            return out
        k = self.k
        frame = self.ranking(k, counts)
        rows = frame.index.to_numpy()
        for name in RANKING if counts is not None else (*RANKING, *POPULARITY):
            out[f"{name}@{k}"] = _per_user(rows, frame[f"{name}@{k}"].to_numpy(), n_users)
        if counts is not None:  # over every ranked user: the lists do not depend on the group
            ranked = np.flatnonzero(np.diff(self.relevant[0]) > 0)
            share = exposure.aplt(self.lists[ranked, :k], _within(self.popularity, counts))
            out[f"share@{k}"] = _per_user(ranked, share, n_users)
        return out

    def lists_shown(self, users: np.ndarray | None = None) -> dict[str, float]:
        """coverage@k and gini@k of the top-k lists of the ranked users (in the ``users`` mask):
        properties of all the lists together, so they have no per-user interval."""
        k, ranked = self.k, np.diff(self.relevant[0]) > 0
        if not k:
            return {}
        if users is not None:
            ranked &= users
        counts = exposure.list_counts(self.lists[ranked, :k], self.n_items)
        return {f"coverage@{k}": exposure.coverage(counts), f"gini@{k}": exposure.gini(counts)}


def _within(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return (values >= bounds[0]) & (values <= bounds[1])


def _per_user(rows: np.ndarray, values: np.ndarray, n_users: int) -> PerUser:
    """A mean over the users ``rows`` (positions) of ``values``; NaN values leave their user out."""
    num, den = np.zeros(n_users), np.zeros(n_users)
    ok = ~np.isnan(values)
    num[rows[ok]] = values[ok]
    den[rows[ok]] = 1.0
    return PerUser(num, den)


def outcome(
    model: CollabModel,
    train: Ratings,
    test: Ratings,
    k: int | None = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
) -> Outcome:
    """Run ``model`` on ``test``: predictions for its ratings, top-k lists (candidates: the
    catalogue minus each user's training items) for the users with a relevant held-out item
    (``k`` None: no lists, only the ratings)."""
    if len(test) == 0:
        raise ValueError(f"{test.name}: no ratings to evaluate")
    f = test.frame
    codes, users = pd.factorize(f["user"], sort=True)
    users = np.asarray(users)
    counts = train.frame["user"].value_counts().reindex(users, fill_value=0).to_numpy()
    liked = np.ones(len(f), dtype=bool) if relevant_threshold is None else f["rating"].to_numpy() >= relevant_threshold
    if k is None:
        liked[:] = False
    elif not liked.any():
        raise ValueError(f"{test.name}: no held-out row has a rating >= {relevant_threshold:g}, so nothing is relevant")
    items = model.items.lookup(f["item"][liked], strict=False)
    unknown = items < 0
    items[unknown] = len(model.items) + np.arange(int(unknown.sum()))  # can only be missed
    order = np.argsort(codes[liked], kind="stable")
    indptr = np.r_[0, np.cumsum(np.bincount(codes[liked], minlength=len(users)))]
    ranked = np.flatnonzero(np.diff(indptr) > 0)
    model_users = model.users.lookup(users, strict=False)
    lists = np.full((len(users), k or 0), -1, dtype=np.int64)
    if k:
        lists[ranked], _ = top_n(model, model_users[ranked], k, seen=seen_csr(model, train))
    item_counts = train.frame["item"].value_counts().reindex(f["item"], fill_value=0).to_numpy()
    held = pd.DataFrame({"user": codes, "item_count": item_counts, "error": np.nan})
    predicts = supports(model, RATINGS)
    if predicts:
        enc = encode(model, test, strict=False)
        pred = model.predict_idx(enc.users, enc.items, timestamps=test.times).numpy().astype(np.float64)
        held["error"] = pred - enc.ratings.numpy()
    return Outcome(
        users, counts, lists, (indptr, items[order]), item_popularity(model, train), held,
        predicts, n_unknown_users=int((model_users[ranked] < 0).sum()),
    )  # fmt: skip
