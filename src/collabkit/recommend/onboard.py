"""Onboarding: choose what to ask a new user next so that a few answers place them well.

Greedy Bayesian experimental design on the fold-in posterior. After the answers so far, the new
user's representation x has (Laplace) posterior covariance proportional to H^-1, with
H = J^T J + diag(lam) (J: the answers' Gauss-Newton Jacobian, lam: the prior of
``model.user_prior``). j_i = f'(z_i) a_i is item i's gradient, so j_i^T H^-1 j_i is how
uncertain the prediction for i still is. We care about the predictions for the items the user
will meet, weighted by popularity p_i (the share of training users who rated i):

    V = sum_j p_j j_j^T H^-1 j_j        (expected predictive variance, up to the noise scale)

An answer to item i would add j_i j_i^T to H; by Sherman-Morrison it lowers V by
v_i^T G v_i / (1 + j_i^T v_i), with v_i = H^-1 j_i and G = sum_j p_j j_j j_j^T. The user can
only answer items they have seen, so the expected gain is p_i times that, and we ask the item
with the largest gain. Before any answer H^-1 is the prior covariance: the first questions are
popular items on which users disagree (divisive) in directions shared by many popular items.
Each answer grows H along its item's direction, so later questions move to directions not yet
covered: the questionnaire spreads across the factor space. A skipped item ("haven't seen it")
changes nothing but is not asked again. On ML-100k this beats asking the most popular items
first at every number of answers (``bench/coldstart.py``). For an ensemble sum_k w_k f_k the
members' gains add up weighted by w_k^2 (the variance of a weighted sum of independent parts).
A kind whose fold-in is not linear in its representation (``linear_fold_in`` False: knn) adds
no gain; a model with no other part asks the most popular items first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.data.interactions import Ratings
from collabkit.models.base import FOLD_IN, CollabModel, require
from collabkit.models.linear import UserPrior


class Questionnaire:
    """An onboarding session: ``next_item()``, ``answer(item, rating | None)``, repeat; then ``user_repr()``.

    ``ratings`` (the training ratings) supply each item's popularity p_i; without them every item
    counts as answerable, which favours obscure items a real user has rarely seen.
    """

    def __init__(
        self, model: CollabModel, ratings: Ratings | None = None, prior: UserPrior | None = None
    ) -> None:
        require(model, FOLD_IN)
        self.model = model
        self.prior = prior or model.user_prior(ratings)
        self.popularity = _popularity(model, ratings)  # (N,) p_i
        # (component, weight, its prior, its A (N, D_k), its c (N,)): one part unless an ensemble
        every = torch.arange(len(model.items))
        components = model.components()
        priors = self.prior.parts or (self.prior,)
        self.parts = [(m, w, p, *(m.user_linear(every) if m.linear_fold_in else (None, None)))
                      for (w, m), p in zip(components, priors)]  # fmt: skip
        self.asked = np.zeros(len(model.items), dtype=bool)
        self.items: list[int] = []  # answered item indices
        self.ratings: list[float] = []
        self._x = self.prior.mean
        self._order: list[int] = []  # current ranking of unasked items, best first

    def next_item(self) -> Any | None:
        """The raw id of the most informative item not asked yet (None when all have been asked)."""
        if not self._order:
            self._order = self._rank()
        while self._order and self.asked[self._order[0]]:
            self._order.pop(0)
        return self.model.items.decode([self._order[0]])[0] if self._order else None

    def answer(self, item: Any, rating: float | None) -> None:
        """Record an answer (``None``: the user skipped it); ratings update the estimate."""
        idx = int(self.model.items.lookup([item])[0])
        if idx in self.items:
            raise ValueError(f"item {item!r} has already been answered")
        self.asked[idx] = True
        if rating is None:
            return
        lo, hi = self.model.meta.get("scale") or (-np.inf, np.inf)
        if not lo <= rating <= hi:
            raise ValueError(f"rating {rating} is outside the scale {lo}..{hi}")
        self.items.append(idx)
        self.ratings.append(float(rating))
        self._x = self.user_repr()
        self._order = []  # the ranking depends on the answers: recompute on the next question

    def user_repr(self) -> Tensor:
        """(D,) the fold-in of the answers so far (the average-taste user before any answer)."""
        if not self.items:
            return self.prior.mean
        return self.model.fold_in(
            torch.tensor(self.items), torch.tensor(self.ratings, dtype=torch.float64), self.prior
        )

    @property
    def answers(self) -> pd.DataFrame:
        """The answers given so far: item (raw id), rating."""
        return pd.DataFrame({"item": self.model.items.decode(self.items), "rating": self.ratings})

    @torch.no_grad()
    def expected_gains(self) -> Tensor:
        """(N,) expected reduction of the popularity-weighted predictive variance per item (-inf: asked)."""
        p = torch.from_numpy(self.popularity)
        answered = torch.tensor(self.items, dtype=torch.int64)
        gain, start = torch.zeros(len(p), dtype=torch.float64), 0
        for model, weight, prior, A, c in self.parts:
            x = self._x[start : start + len(prior.mean)]
            start += len(prior.mean)
            if A is None:  # a fold-in that is not linear in the representation: no gain of its own
                continue
            _, slope = model.link(A @ x + c)
            J = A * slope.unsqueeze(1)  # (N, D) every item's gradient at the current estimate
            H = J[answered].T @ J[answered] + torch.diag(prior.precision)
            V = J @ torch.linalg.inv(H)  # (N, D) v_i = H^-1 j_i
            G = (J * p.unsqueeze(1)).T @ J  # (D, D) sum_j p_j j_j j_j^T
            # p_i v_i^T G v_i / (1 + j_i^T v_i)
            gain += weight**2 * p * (V @ G * V).sum(1) / (1 + (V * J).sum(1))
        if all(A is None for *_, A, _ in self.parts):
            gain = p.clone()  # no part to measure gains on: the most popular first
        gain[torch.from_numpy(self.asked)] = -torch.inf
        return gain

    def _rank(self) -> list[int]:
        """Unasked item indices by expected gain, best first (ties: lower index); the top 256 suffice."""
        gain = self.expected_gains()
        order = torch.sort(-gain, stable=True).indices
        return [int(i) for i in order[torch.isfinite(gain[order])][:256]]


def _popularity(model: CollabModel, ratings: Ratings | None) -> np.ndarray:
    """Share of training users who rated each item (1 for all without ratings)."""
    if ratings is None:
        return np.ones(len(model.items))
    i = model.items.lookup(ratings.frame["item"], strict=False)
    counts = np.bincount(i[i >= 0], minlength=len(model.items))
    return counts / max(ratings.frame["user"].nunique(), 1)
