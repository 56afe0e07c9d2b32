"""SVD++ (Koren 2008): biased MF whose user vector also sums factors of the items the user rated.

    score(u, i) = sigmoid_range(q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j) + b_u + b_i, *y_range)

N(u) is the set of items u rated in TRAINING (never test items): which films someone chose to
rate says something about their taste beyond the stars they gave. N(u) is kept as CSR buffers
(``history_indptr``, ``history_items``) so it is saved with the weights; ``from_data`` fills it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models.base import UPDATE, CollabModel, Sizes, extended_indptr
from collabkit.models.dot import BiasConfig, DotProductBias


@dataclass
class SVDppConfig(BiasConfig):
    pass


class SVDpp(DotProductBias):
    """DotProductBias whose user representation is [p_u + |N(u)|^-1/2 sum_j y_j, b_u]."""

    kind = "svdpp"
    Config = SVDppConfig
    # N(u) is the training history: an update on part of the data would not extend it (no UPDATE)
    capabilities = DotProductBias.capabilities - {UPDATE}
    data_sized = ("history_items",)  # length = number of training ratings, known only from data
    # forward reads N(u) by user index, so the trainer must not remap indices to batch-local rows:
    # no table is declared and the sparse gradients keep updates row-wise (as in Hybrid)
    user_item_tables: ClassVar[dict[str, str]] = {}

    def __init__(self, config: SVDppConfig, users: Vocab, items: Vocab) -> None:
        super().__init__(config, users, items)
        # y_j, summed over a user's rated items by one EmbeddingBag call
        self.implicit = nn.EmbeddingBag(len(items), config.n_factors, mode="sum", sparse=True)
        nn.init.normal_(self.implicit.weight, 0.0, 0.01)
        self.register_buffer("history_indptr", torch.zeros(len(users) + 1, dtype=torch.int64))
        self.register_buffer("history_items", torch.zeros(0, dtype=torch.int64))

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """Every example sums the factors of its user's whole history: ~18 units per rating an
        epoch (measured on ML-100k); the tables, the y_j table and N(u) (8 bytes a rating)."""
        f, epochs = cls.option(config, "n_factors"), cls.option(config, "epochs")
        cells = (sizes.users + sizes.items) * (f + 1) + sizes.items * f
        return epochs * (18.0 * sizes.n + 0.12 * cells), cells * 16 + sizes.n * 160

    @classmethod
    def from_data(cls, ratings: Ratings, **config: Any) -> CollabModel:
        """Untrained model whose N(u) are the items each user rated in ``ratings``."""
        model = super().from_data(ratings, **config)
        model.set_history(ratings)
        return model

    def set_history(self, ratings: Ratings) -> None:
        """Store each user's rated items N(u) as CSR (users sorted by index, items by index)."""
        u = self.users.lookup(ratings.frame["user"])
        i = self.items.lookup(ratings.frame["item"])
        order = np.lexsort((i, u))
        counts = np.bincount(u, minlength=len(self.users))
        self.history_indptr = torch.from_numpy(np.r_[0, np.cumsum(counts)].astype(np.int64))
        self.history_items = torch.from_numpy(i[order].astype(np.int64))

    def implicit_factors(self, u: Tensor) -> Tensor:
        """(B,) user indices -> (B, F) |N(u)|^-1/2 sum_{j in N(u)} y_j, one EmbeddingBag call."""
        start, stop = self.history_indptr[u], self.history_indptr[u + 1]
        lens = stop - start
        offsets = torch.cumsum(lens, 0) - lens
        # position k of bag b reads history_items[start_b + k]
        pos = torch.arange(int(lens.sum())) - torch.repeat_interleave(offsets - start, lens)
        weights = torch.repeat_interleave(lens.clamp(min=1).float().rsqrt(), lens)
        return self.implicit(self.history_items[pos], offsets, per_sample_weights=weights)

    def user_repr(self, u: Tensor) -> Tensor:
        return torch.cat([self._user_vector(u), self.user_bias(u)], 1)

    def _user_vector(self, u: Tensor) -> Tensor:
        """p_u + implicit part, computed once per distinct user of the batch."""
        uu, inv = torch.unique(u, return_inverse=True)
        return self.user_factors(u) + self.implicit_factors(uu)[inv]

    def forward(self, u: Tensor, i: Tensor) -> Tensor:
        dot = (self._user_vector(u) * self.item_factors(i)).sum(1)
        return self._squash(dot + self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1))

    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        """A user's [vector, bias] is written as p_u = vector - its implicit part (N(u) is kept)."""
        if side == "user":
            reprs = reprs.clone()
            reprs[:, :-1] -= self.implicit_factors(index)
        super().set_reprs(side, index, reprs)

    @torch.no_grad()
    def grown(self, users: Vocab, items: Vocab) -> CollabModel:
        """New users have no history: N(u) is empty for them (the CSR pointers repeat the last)."""
        model = super().grown(users, items)
        model.history_indptr = extended_indptr(self.history_indptr, len(users))
        return model

