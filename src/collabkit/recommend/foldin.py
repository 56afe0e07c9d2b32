"""Fold-in from a frame of answers: raw ids in, each kind's own fold-in (``model.fold_in``) inside.

A user the model never saw is placed in its user space from a few (item, rating) answers, the
item side fixed, without retraining. How is the kind's own mathematics: the MAP solve under a
prior measured on the trained users for kinds whose score is linear in the user
(``models.linear``), the exact solve for the implicit rankers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import Tensor

from collabkit.models.base import FOLD_IN, CollabModel, require
from collabkit.models.linear import UserPrior, padded


def pad_answers(
    model: CollabModel, answers: pd.DataFrame, users: np.ndarray | None = None
) -> tuple[np.ndarray, Tensor, Tensor]:
    """(raw users, items (U, m) padded -1, ratings (U, m)) from a long frame user, item, rating.

    ``users`` fixes the rows' order (a user without answers gets a row of padding). Items must be
    known to the model (UnknownIdError otherwise: an answer about an item the model cannot place
    carries no information, and dropping it silently would hide the mistake).
    """
    f = answers
    if users is None:
        users = np.unique(f["user"].to_numpy())
    codes = pd.Index(users).get_indexer(f["user"])
    if (codes < 0).any():
        raise ValueError(
            f"answers from users not in `users`: {f['user'][codes < 0].unique()[:5].tolist()}"
        )
    items, values = padded(codes, model.items.lookup(f["item"]), f["rating"].to_numpy(), len(users))
    return users, items, values


def fold_in_frame(
    model: CollabModel,
    answers: pd.DataFrame,
    prior: UserPrior | None = None,
    users: np.ndarray | None = None,
) -> tuple[np.ndarray, Tensor]:
    """(raw users, (U, D) representations) from a long frame of answers: user, item, rating.

    ``prior``: ``model.user_prior(training_ratings)``, computed once and reused; the default is
    built from the model alone (implicit models need none: each answer's value is the
    interaction's weight, 1 = interacted, as in training).
    """
    require(model, FOLD_IN)
    users, items, values = pad_answers(model, answers, users)
    return users, model.fold_in(items, values, prior)
