"""Pairwise ranking on the one-cycle engine: negative samplers and the BPR loss.

``fit_ranking`` trains a model on implicit positives: each batch of positives (u, i) gets sampled
negatives j (``NegativeSampler``, through ``fit_one_cycle``'s ``batch_fn``) and the loss is
-log sigmoid(s(u, i) - s(u, j)).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor

from collabkit.core.loop import History, Model, fit_one_cycle
from collabkit.data.implicit import Interactions, interactions
from collabkit.data.interactions import Ratings

Distribution = Literal["uniform", "popularity"]


class NegativeSampler:
    """Draws, for each user of a batch, items that user never interacted with in training.

    ``uniform``: exactly uniform over the user's non-positives, in one vectorised pass. With the
    user's positives sorted p_0 < p_1 < ..., the k-th non-positive item (0-based) is
    k + #{m : p_m - m <= k}, so drawing k ~ U{0, .., N - n_u - 1} and counting with one
    searchsorted over the keys u * N + (p_m - m) (sorted globally) needs no rejection at all.

    ``popularity``: P(j) proportional to count_j ** power among the user's non-positives
    (word2vec's 0.75 by default), so popular items, the hard negatives, come up more often. Drawn
    by inverse CDF and rejected when positive; after ``max_rounds`` rejections a row falls back to
    the uniform draw, which keeps it exact for all but users who have most popular items.
    Unknown users (index -1) have no positives: any item. A user with every item is an error.
    """

    def __init__(
        self,
        positives: Interactions,
        distribution: Distribution = "uniform",
        power: float = 0.75,
        max_rounds: int = 20,
    ) -> None:
        if distribution not in ("uniform", "popularity"):
            raise ValueError(
                f"distribution must be 'uniform' or 'popularity', not {distribution!r}"
            )
        counts = positives.counts()
        n = positives.n_items
        if len(counts) and counts.max() >= n:
            raise ValueError(
                f"user index {int(counts.argmax())} has interacted with all {n} items: no negative to sample"
            )
        self.n_items, self.distribution, self.max_rounds = n, distribution, max_rounds
        self.indptr = torch.from_numpy(positives.indptr)
        self.counts = torch.from_numpy(counts)
        users = torch.from_numpy(positives.users)
        items = torch.from_numpy(positives.items)
        rank = torch.arange(len(items)) - self.indptr[users]  # m, position within the user's row
        self.gap_keys = users * n + (items - rank)  # u * N + (p_m - m): sorted
        self.pos_keys = users * n + items  # u * N + p_m: sorted, for membership tests
        pop = torch.from_numpy(np.bincount(positives.items, minlength=n)).double() ** power
        self.cdf = torch.cumsum(pop, 0) / pop.sum() if pop.sum() > 0 else None

    def __call__(self, users: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B,) user indices -> (B,) negative item indices."""
        if self.distribution == "uniform" or self.cdf is None:
            return self._uniform(users, generator)
        out = self._by_popularity(len(users), generator)
        todo = torch.nonzero(self.is_positive(users, out)).squeeze(
            1
        )  # rows still holding a positive
        for _ in range(self.max_rounds):
            if not len(todo):
                return out
            out[todo] = self._by_popularity(len(todo), generator)
            todo = todo[self.is_positive(users[todo], out[todo])]
        out[todo] = self._uniform(users[todo], generator)
        return out

    def _by_popularity(self, n: int, generator: torch.Generator | None) -> Tensor:
        draw = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.searchsorted(self.cdf, draw).clamp(max=self.n_items - 1)

    def _uniform(self, users: Tensor, generator: torch.Generator | None) -> Tensor:
        known = users >= 0
        u = users.clamp(min=0)
        n_pos = torch.where(known, self.counts[u], 0)
        free = self.n_items - n_pos  # (B,) number of non-positives
        k = (torch.rand(len(users), generator=generator, dtype=torch.float64) * free).long()
        k = torch.minimum(k, free - 1)
        before = (
            torch.searchsorted(self.gap_keys, u * self.n_items + k, right=True) - self.indptr[u]
        )
        return k + torch.where(known, before, 0)

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """(B,) bool: item b is a training positive of user b."""
        if len(self.pos_keys) == 0:
            return torch.zeros(len(users), dtype=torch.bool)
        keys = users.clamp(min=0) * self.n_items + items
        pos = torch.searchsorted(self.pos_keys, keys).clamp(max=len(self.pos_keys) - 1)
        return (users >= 0) & (self.pos_keys[pos] == keys)


def pairs_batch(sampler: NegativeSampler, n_negatives: int = 1):
    """``fit_one_cycle``'s batch_fn: positives (u, i, w) -> users [u; u..], items [i; j..], weights w.

    The step scores B positives followed by n_negatives * B sampled negatives (same users, in
    blocks of B); ``bpr_loss`` splits them again.
    """

    def batch(
        u: Tensor, i: Tensor, w: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        uu = u.repeat(n_negatives)
        j = sampler(uu, generator)
        return torch.cat([u, uu]), torch.cat([i, j]), w

    return batch


def bpr_loss(scores: Tensor, weights: Tensor) -> Tensor:
    """mean over positives (weighted by w) of mean_j -log sigmoid(s(u, i) - s(u, j))."""
    b = len(weights)
    pos, neg = scores[:b], scores[b:].view(-1, b)  # (B,), (n_negatives, B)
    loss = F.softplus(neg - pos).mean(0)  # softplus(-x) = -log sigmoid(x)
    return (loss * weights).sum() / weights.sum()


def fit_ranking(
    model: Model, train: Ratings, valid: Ratings | None = None,
    epochs: int = 40, lr_max: float = 3e-2, wd: float = 1.0, bs: int = 1024,  # fit_one_cycle's
    sampler: Distribution = "uniform", n_negatives: int = 4, power: float = 0.75,  # the negatives
    seed: int = 42, console: Console | None = None, progress: bool = False,
) -> History:  # fmt: skip
    """Train ``model`` (BPR) on ``train``'s positives with sampled negatives; one-cycle AdamW.

    Negatives never include a user's training positives. ``valid`` reports the BPR loss of held-out
    positives against fixed sampled negatives. Defaults were tuned on a validation split carved from
    ML-100k's training part (``bench/implicit.py --tune``).
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be at least 1, got {n_negatives}")
    sample = NegativeSampler(interactions(train, model.users, model.items), sampler, power)
    return fit_one_cycle(
        model,
        train,
        valid,
        epochs=epochs,
        lr_max=lr_max,
        wd=wd,
        bs=bs,
        seed=seed,
        console=console,
        progress=progress,
        loss_fn=bpr_loss,
        batch_fn=pairs_batch(sample, n_negatives),
        lr_ref_bs=None,  # lr_max was tuned at this batch size: use it as is
    )
