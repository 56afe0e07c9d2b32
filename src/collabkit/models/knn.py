"""Item-based k-nearest neighbours on baseline residuals (Koren 2010's "kNN with baseline").

    score(u, i) = clip(b_ui + sum_{j in N(u)} s_ij e_uj / sum_{j in N(u)} s_ij)

b_ui = mu + b_u + b_i is the baseline predictor (the kind's own shrinkage, ``set_baseline``),
e_uj = r_uj - b_uj the residuals of u's training ratings N(u), and s_ij >= 0 the Pearson
correlation of items i and j's residuals over the users who rated both, shrunk towards 0 by
(n_ij - 1) / (n_ij - 1 + shrink); negative correlations are left out. Every positive neighbour a
user rated counts (keeping only the 80 nearest of them gave 0.9122 against 0.9127 on an ML-100k
validation part). A pair with no rated neighbour is scored by its baseline.

It reads what factor models summarise, the items a user rated themselves, so its similar items
and its reasons are its own similarities (NEIGHBOURS), and a new user is folded in by their
answers' residuals (one user sweep of the baseline). In the contract's terms
user_repr(u) = [e_u, m_u, b_u] (residuals and 0/1 rated flags over every item) and
item_repr(i) = [s_i, b_i], so the head is two dot products; the residuals are kept as CSR
buffers and the similarities as a dense items x items matrix, which is fine up to tens of
thousands of items (``cost``/``sized`` skip it past the memory limit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from collabkit.core.loop import History, encode
from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models.base import (
    BIASES,
    FOLD_IN,
    NEIGHBOURS,
    RATINGS,
    CollabModel,
    Scorer,
    Sizes,
    dense_rows,
    extended_indptr,
)
from collabkit.models.config import ModelConfig
from collabkit.models.linear import UserPrior

#: users whose residual rows are made dense at a time while the similarities are summed
USER_BLOCK = 4096


@dataclass
class KNNConfig(ModelConfig):
    n_factors: int = field(default=0, metadata={"min": 0, "max": 0})  # no factors
    # (n_ij - 1) / (n_ij - 1 + shrink): how many common raters a correlation needs to count
    shrink: float = field(default=100.0, metadata={"min": 0})
    # the baseline's shrinkage of the item and user offsets and its alternating sweeps
    reg_item: float = field(default=10.0, metadata={"min": 0})
    reg_user: float = field(default=15.0, metadata={"min": 0})
    sweeps: int = field(default=20, metadata={"min": 1})
    # predictions clipped here; from_data sets the scale
    clip: tuple[float, float] | None = field(default=None, metadata={"increasing": True})

    def fit_bytes(self, n_users: int, n_items: int, n_ratings: int, weight_bytes: int) -> int:
        """The items x items sums and their temporaries (four float32 matrices at the peak) and a
        block of dense residual rows."""
        return 16 * n_items * n_items + 8 * USER_BLOCK * n_items + 40 * n_ratings


class ItemKNN(CollabModel):
    """Item-item kNN on baseline residuals (module docstring); ``fit(train)`` computes it."""

    kind = "knn"
    Config = KNNConfig
    capabilities = frozenset({FOLD_IN, RATINGS, BIASES, NEIGHBOURS})
    bias_columns = (1, 1)  # user_repr = [e_u, m_u, b_u]; item_repr = [s_i, b_i]
    wants_y_range = False
    data_sized = ("resid_items", "resid_values")  # length = number of training ratings
    linear_fold_in = False  # a ratio of two products: fold_in sets the residuals directly

    def __init__(self, config: KNNConfig, users: Vocab, items: Vocab) -> None:
        super().__init__(config, users, items)
        self.register_buffer("global_mean", torch.zeros(()))
        self.register_buffer("similarity", torch.zeros(len(items), len(items)))
        self.register_buffer("resid_indptr", torch.zeros(len(users) + 1, dtype=torch.int64))
        self.register_buffer("resid_items", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("resid_values", torch.zeros(0))

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """Three dense (users x items)^T (users x items) products (~5e-5 units a multiply-add:
        0.2-0.3 s on ML-100k's 943 x 1650, one thread) and the baseline's sweeps; memory: the
        similarities and the sums beside them, a block of dense rows, the residuals."""
        products = 3.0 * sizes.users * float(sizes.items) ** 2
        work = products * 5e-5 + sizes.n * (0.3 + 0.06 * cls.option(config, "sweeps"))
        return work, 20.0 * sizes.items**2 + 8.0 * min(
            sizes.users, USER_BLOCK
        ) * sizes.items + 40.0 * sizes.n

    @classmethod
    def sized(
        cls, config: dict[str, Any], sizes: Sizes, limit: float
    ) -> tuple[dict[str, Any] | None, str]:
        _, mem = cls.cost(config, sizes)
        if mem <= limit:
            return config, ""
        return None, (f"skipped: its dense items x items similarities ({sizes.items} x {sizes.items}) "
                      f"would need ~{mem / 1e9:.1f} GB (> {limit / 1e9:.1f} GB)")  # fmt: skip

    # --- the contract ---------------------------------------------------------------------
    def user_repr(self, u: Tensor) -> Tensor:
        """(B,) -> (B, 2 n_items + 1): the residuals e_u, the rated flags m_u, then b_u."""
        return torch.cat([*self._rows(u), self.baseline_user[u].unsqueeze(1)], 1)

    def _rows(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(B, n_items) each: users ``u``'s residuals and 0/1 rated flags, from the CSR buffers."""
        n, values = len(self.items), self.resid_values
        flags = values.new_ones(()).expand_as(values)  # a view: no copy of the ratings
        return (dense_rows(self.resid_indptr, self.resid_items, values, u, n),
                dense_rows(self.resid_indptr, self.resid_items, flags, u, n))  # fmt: skip

    def item_repr(self, i: Tensor) -> Tensor:
        """(B,) -> (B, n_items + 1): the similarities s_i to every item, then b_i."""
        return torch.cat([self.similarity[i], self.baseline_item[i].unsqueeze(1)], 1)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        n = ir.shape[-1] - 1
        s = ir[..., :n]
        num, den = (ur[..., :n] * s).sum(-1), (ur[..., n : 2 * n] * s).sum(-1)
        return self._finish(ur[..., -1] + ir[..., -1], num, den)

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """Two products with the chosen items' similarity rows (U x n_items each)."""
        idx = self.catalogue(items)
        s, b = self.similarity[idx], self.baseline_item[idx]
        n = len(self.items)

        @torch.no_grad()
        def rank(ur: Tensor) -> Tensor:
            ur = ur.float()
            num, den = ur[:, :n] @ s.T, ur[:, n : 2 * n] @ s.T
            return self._finish(ur[:, -1:] + b.unsqueeze(0), num, den)

        return Scorer(rank)

    def _finish(self, offsets: Tensor, num: Tensor, den: Tensor) -> Tensor:
        nb = torch.where(den > 0, num / den.clamp(min=1e-12), 0.0)
        x = self.global_mean + offsets + nb
        c = self.config.clip
        return x if c is None else x.clamp(*c)

    def item_similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """s_ab: similar items are an item's largest; a reason is the liked item nearest."""
        return self.similarity[a, b]

    # --- training ---------------------------------------------------------------------------
    @torch.no_grad()
    def _fit(self, train: Ratings, valid: Ratings | None, console: Any, progress: bool) -> History:
        """The baseline, the residuals as CSR, then the shrunk correlations (module docstring)."""
        cfg: KNNConfig = self.config
        t0 = time.perf_counter()
        self.set_baseline(train, (cfg.reg_item, cfg.reg_user), cfg.sweeps)
        self.global_mean.fill_(self.meta["global_mean"])
        data = encode(self, train)
        u, i = data.users, data.items
        e = (
            data.ratings.double()
            - self.global_mean.double()
            - self.baseline_user[u].double()
            - self.baseline_item[i].double()
        )
        self._set_residuals(u, i, e.float())
        self.similarity = self._correlations()
        history = History()
        history.fit_seconds = time.perf_counter() - t0
        history.rows.append({"time": history.fit_seconds})
        return history

    def _set_residuals(self, u: Tensor, i: Tensor, e: Tensor) -> None:
        """Keep every user's residuals as CSR (users by index, items sorted within)."""
        order = torch.from_numpy(np.lexsort((i.numpy(), u.numpy())))
        counts = torch.bincount(u, minlength=len(self.users))
        self.resid_indptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
        self.resid_items = i[order].to(torch.int64)
        self.resid_values = e[order].float()

    def _correlations(self) -> Tensor:
        """(n_items, n_items) shrunk positive Pearson correlations of the residuals, summed over
        blocks of USER_BLOCK dense residual rows (sum e_i e_j, common raters, sum e_i^2 over them)."""
        n = len(self.items)
        prod, common, squares = torch.zeros(n, n), torch.zeros(n, n), torch.zeros(n, n)
        for s in range(0, len(self.users), USER_BLOCK):
            e, m = self._rows(torch.arange(s, min(s + USER_BLOCK, len(self.users))))
            prod.addmm_(e.T, e)
            common.addmm_(m.T, m)
            squares.addmm_((e * e).T, m)  # [i, j]: sum of e_ui^2 over the users who rated j too
            del e, m
        den = (squares * squares.T).sqrt_()
        prod.div_(den.clamp_(min=1e-12))
        del squares, den
        shrink = (common - 1).clamp_(min=0)
        prod.mul_(shrink.div_(shrink + self.config.shrink).nan_to_num_(0.0)).clamp_(min=0.0)
        prod.fill_diagonal_(0.0)
        return prod

    # --- FOLD_IN: a new user's residuals from their answers -------------------------------------
    @torch.no_grad()
    def user_prior(
        self, ratings: Ratings | None = None, noise_var: float | None = None
    ) -> UserPrior:
        """No answers is no residual: the all-zero user, whose score is mu + b_i."""
        width = 2 * len(self.items) + 1
        return UserPrior(
            torch.zeros(width, dtype=torch.float64), torch.ones(width, dtype=torch.float64)
        )

    @torch.no_grad()
    def fold_in(self, items: Tensor, values: Tensor, prior: UserPrior | None = None) -> Tensor:
        """(U, m) answered items (-1: padding) and ratings -> (U, 2 n_items + 1) (one user: 1-D in,
        1-D out): b_u by one user
        sweep of the baseline (the items' offsets fixed), then the answers' residuals."""
        if items.dim() == 1:  # one user: (D,)
            return self.fold_in(items.unsqueeze(0), values.unsqueeze(0), prior)[0]
        n, known = len(self.items), items >= 0
        ii = items.clamp(min=0)
        bi = torch.where(known, self.baseline_item[ii].double(), 0.0)
        r = values.double()
        mu = float(self.global_mean)
        bu = (torch.where(known, r - mu - bi, 0.0)).sum(1) / (self.config.reg_user + known.sum(1))
        out = torch.zeros(len(items), 2 * n + 1, dtype=torch.float64)
        rows = torch.arange(len(items)).unsqueeze(1).expand_as(items)
        e = torch.where(known, r - mu - bu.unsqueeze(1) - bi, 0.0)
        out[rows[known], ii[known]] = e[known]
        out[rows[known], n + ii[known]] = 1.0
        out[:, -1] = bu
        return out.float()

    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        """A folded-in user's residuals replace their CSR row; their b_u is the last column."""
        if side != "user":
            return super().set_reprs(side, index, reprs)
        n = len(self.items)
        old_users = torch.repeat_interleave(torch.arange(len(self.users)), self.resid_indptr.diff())
        keep = ~torch.isin(old_users, index)  # their old rows go
        rated = reprs[:, n : 2 * n] > 0
        new_users = index.unsqueeze(1).expand(-1, n)[rated]
        new_items = torch.arange(n).unsqueeze(0).expand(len(index), -1)[rated]
        users = torch.cat([old_users[keep], new_users])
        items = torch.cat([self.resid_items[keep], new_items])
        values = torch.cat([self.resid_values[keep], reprs[:, :n][rated].float()])
        self._set_residuals(users, items, values)
        self.baseline_user[index] = reprs[:, -1].float()

    @torch.no_grad()
    def grown(self, users: Vocab, items: Vocab) -> CollabModel:
        """New users have no residuals (the CSR pointers repeat the last); new items no neighbours."""
        model = super().grown(users, items)
        model.resid_indptr = extended_indptr(self.resid_indptr, len(users))
        return model
