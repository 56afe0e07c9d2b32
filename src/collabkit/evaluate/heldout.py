r"""Strong generalisation (Liang et al. 2018): rank the whole catalogue for users the model never saw.

``data.split.heldout_users`` keeps some users out of training and splits each one's interactions
into a fold-in part (80%) and a held-out part. The trained model folds each held-out user in from
their fold-in part (``recommend.fold_in_frame``: each kind's own fold-in, the exact solve for the
implicit rankers, MAP under the prior fitted to the trained users, ``model.user_prior``, for
a model that predicts ratings) and ranks the whole catalogue
minus those items (``recommend.top_n``); the list is scored against the held-out part:

    recall@k = hits in the top k / min(k, |R_u|)   (Liang et al.'s normalisation, so 1 is reachable
                                                     when a user has more than k held-out items)
    ndcg@k   = DCG@k / IDCG@k, binary gains, the ideal list has min(|R_u|, k) hits first

reported as recall@20, recall@50 and ndcg@100, the numbers the implicit-feedback literature
quotes. Only kinds that declare fold-in can be scored this way. A fold-in answer about an item the
model never saw cannot be folded in: it is left out and counted (``n_unknown_answers``); a
held-out item the model never saw stays relevant, a guaranteed miss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from collabkit.data.interactions import Ratings
from collabkit.evaluate.metrics import hits_matrix
from collabkit.evaluate.ranking import item_popularity
from collabkit.evaluate.scores import Outcome
from collabkit.evaluate.uncertainty import PerUser
from collabkit.models.base import FOLD_IN, RATINGS, CollabModel, registry, supports
from collabkit.models.linear import UserPrior
from collabkit.recommend import fold_in_frame, top_n

RECALL_AT = (20, 50)
NDCG_AT = 100


def metric_names() -> list[str]:
    return [*(f"recall@{k}" for k in RECALL_AT), f"ndcg@{NDCG_AT}"]


def heldout_outcome(
    model: CollabModel,
    train: Ratings,
    fold_in: Ratings,
    test: Ratings,
    relevant_threshold: float | None = None,
) -> Outcome:
    """Fold in the users of ``test`` from their rows of ``fold_in``, rank the catalogue minus those
    items, and keep the top ``NDCG_AT`` against their held-out items (rating >= ``relevant_threshold``;
    None: every one). ``train`` gives the items' popularity."""
    if not supports(model, FOLD_IN):
        kinds = ", ".join(sorted(k for k, cls in registry().items() if supports(cls, FOLD_IN)))
        raise ValueError(f"a {model.kind} model cannot fold in new users; the held-out-user protocol needs one that can: {kinds}")
    f = test.frame
    codes, users = pd.factorize(f["user"], sort=True)
    users = np.asarray(users)
    answers = fold_in.frame[fold_in.frame["user"].isin(users)]
    known = model.items.lookup(answers["item"], strict=False) >= 0
    answers = answers[known][["user", "item", "rating"]]
    # a rating model shrinks a new user towards the prior fitted to its trained users (computed
    # once); the implicit rankers solve their users exactly and take no prior
    prior = model.user_prior(train) if supports(model, RATINGS) else None
    reprs = _fold_in(model, answers, users, prior)
    a_user = pd.Index(users).get_indexer(answers["user"])
    a_item = model.items.lookup(answers["item"])
    order = np.lexsort((a_item, a_user))
    seen = (np.r_[0, np.cumsum(np.bincount(a_user, minlength=len(users)))], a_item[order])
    liked = np.ones(len(f), dtype=bool) if relevant_threshold is None else f["rating"].to_numpy() >= relevant_threshold
    items = model.items.lookup(f["item"][liked], strict=False)
    unknown = items < 0
    items[unknown] = len(model.items) + np.arange(int(unknown.sum()))  # can only be missed
    rel_order = np.argsort(codes[liked], kind="stable")
    indptr = np.r_[0, np.cumsum(np.bincount(codes[liked], minlength=len(users)))]
    lists, _ = top_n(model, np.arange(len(users)), NDCG_AT, seen=seen, reprs=reprs)
    item_counts = train.frame["item"].value_counts().reindex(f["item"], fill_value=0).to_numpy()
    return Outcome(
        users, np.bincount(a_user, minlength=len(users)), lists, (indptr, items[rel_order]),
        item_popularity(model, train), pd.DataFrame({"user": codes, "item_count": item_counts, "error": np.nan}),
        predicts_ratings=False, n_unknown_answers=int((~known).sum()),
    )  # fmt: skip


#: users folded in per call, grouped by their number of answers: a call pads every user's answers
#: to its longest, so one heavy user does not make a whole batch heavy
FOLD_IN_USERS = 256


def _fold_in(model: CollabModel, answers: pd.DataFrame, users: np.ndarray, prior: UserPrior | None) -> torch.Tensor:
    """(U, D) representations of ``users`` folded in from their ``answers`` (``fold_in_frame``),
    FOLD_IN_USERS at a time in order of their number of answers."""
    sizes = answers["user"].value_counts().reindex(users, fill_value=0).to_numpy()
    order = np.argsort(sizes, kind="stable")
    parts, rows = [], []
    for start in range(0, len(users), FOLD_IN_USERS):
        batch = users[order[start : start + FOLD_IN_USERS]]
        _, reprs = fold_in_frame(model, answers[answers["user"].isin(batch)], prior, batch)
        parts.append(torch.as_tensor(reprs))
        rows.append(order[start : start + FOLD_IN_USERS])
    out = torch.cat(parts)
    return out[torch.from_numpy(np.argsort(np.concatenate(rows), kind="stable"))]


def heldout_metrics(result: Outcome) -> dict[str, PerUser]:
    """recall@20, recall@50 (hits / min(k, |R_u|)) and ndcg@100 per held-out user (module docstring)."""
    frame = result.ranking(NDCG_AT)
    rows, n_rel = frame.index.to_numpy(), frame["n_relevant"].to_numpy()
    hits = np.cumsum(hits_matrix(result.lists, result.relevant, NDCG_AT)[rows], axis=1)  # (R, NDCG_AT)
    out = {}
    for k in RECALL_AT:
        out[f"recall@{k}"] = _mean_over(rows, hits[:, k - 1] / np.minimum(k, n_rel), len(result.users))
    out[f"ndcg@{NDCG_AT}"] = _mean_over(rows, frame[f"ndcg@{NDCG_AT}"].to_numpy(), len(result.users))
    return out


def _mean_over(rows: np.ndarray, values: np.ndarray, n_users: int) -> PerUser:
    num, den = np.zeros(n_users), np.zeros(n_users)
    num[rows], den[rows] = values, 1.0
    return PerUser(num, den)
