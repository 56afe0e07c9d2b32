"""Top-N quality on held-out ratings: does a model put the items a user liked near the top?

For every test user with at least one relevant held-out item, the model ranks every item of its
catalogue the user did NOT rate in training (training items are excluded from the candidates,
as a recommender would) and the top ``k`` are compared with the held-out items rated
>= ``relevant_threshold``. The metric definitions live in ``collabkit.evaluate.metrics``.

Nothing is dropped: a test user the model never saw is ranked by the model's documented
fallback (the all-zero user representation, e.g. item bias alone) and counted in
``n_unknown_users``; a relevant held-out item the model never saw can't be recommended, so it
stays in the user's relevant set as a guaranteed miss (recall is not flattered).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collabkit.data.interactions import Ratings
from collabkit.evaluate.metrics import ranking_metrics
from collabkit.models.base import CollabModel
from collabkit.recommend.topn import seen_csr, top_n

RELEVANT_THRESHOLD = 4.0  # "liked" on a 1-5 scale: 4 or 5 stars


def relevant_items(
    model: CollabModel, test: Ratings, relevant_threshold: float | None = RELEVANT_THRESHOLD
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(user indices (U,), relevant items as CSR (indptr, item indices)) of the test users.

    Relevant = held-out rating >= ``relevant_threshold`` (None: every held-out item). A user
    unknown to the model has index -1; an unknown relevant item gets an index past the catalogue
    (n_items, n_items + 1, ...) so it can only be missed.
    """
    f = (
        test.frame
        if relevant_threshold is None
        else test.frame[test.frame["rating"] >= relevant_threshold]
    )
    codes, raw_users = pd.factorize(f["user"], sort=True)  # one code per distinct raw user
    users = model.users.lookup(raw_users, strict=False)
    items = model.items.lookup(f["item"], strict=False)
    unknown = items < 0
    items[unknown] = len(model.items) + np.arange(int(unknown.sum()))
    order = np.argsort(codes, kind="stable")
    indptr = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(raw_users)))]
    return users, (indptr, items[order])


def item_popularity(model: CollabModel, train: Ratings) -> np.ndarray:
    """(n_items,) number of training ratings of each item, in the model's index order."""
    i = model.items.lookup(train.frame["item"], strict=False)
    return np.bincount(i[i >= 0], minlength=len(model.items))


def evaluate_ranking(
    model: CollabModel, train: Ratings, test: Ratings,
    k: int = 10, relevant_threshold: float | None = RELEVANT_THRESHOLD,
) -> dict[str, float | int]:  # fmt: skip
    """precision/recall/ndcg/map/hit_rate/mrr/coverage/novelty @k of the model's top-k lists.

    Candidates: the model's catalogue minus each user's training items. Averaged over the test
    users with a relevant item (``n_users``); also reports ``n_unknown_users`` among them.
    """
    users, relevant = relevant_items(model, test, relevant_threshold)
    if len(users) == 0:
        cut = "any rating" if relevant_threshold is None else f"a rating >= {relevant_threshold:g}"
        raise ValueError(f"{test.name}: no held-out row has {cut}, so nothing is relevant")
    recommended, _ = top_n(model, users, k, seen=seen_csr(model, train))
    metrics = ranking_metrics(
        recommended,
        relevant,
        k,
        n_items=len(model.items),
        item_popularity=item_popularity(model, train),
    )
    return {**metrics, "n_unknown_users": int((users < 0).sum())}
