"""Ratings as classes: a factor model that gives a probability for every rating level.

The same embedding core as dot-bias gives a latent score, and K-1 ordered thresholds cut its
logistic noise into the K rating levels l_1 < ... < l_K (a cumulative-link, "proportional odds"
model, McCullagh 1980; Koren and Sill's OrdRec with global thresholds)::

    z_ui        = p_u . q_i + b_u + b_i                  latent score
    P(r <= l_k) = sigmoid(theta_k - z_ui),   k = 1..K-1,  theta_1 < ... < theta_{K-1}
    P(r = l_k)  = P(r <= l_k) - P(r <= l_{k-1})           (P(r <= l_0) = 0, P(r <= l_K) = 1)

Training minimises the cross-entropy (negative log-likelihood of the observed level). The order
is built in: raising z moves probability from every level to the ones above it, so a 4 is nearer
a 5 than a 1 is. The thresholds stay ordered because they are parameterised as a first cut plus
positive gaps (softplus). ``predict`` is the expected rating (for RMSE),

    E[r] = l_K - sum_k (l_{k+1} - l_k) sigmoid(theta_k - z_ui),

and ``predict_proba`` the (n, K) distribution. The levels are the training data's distinct
ratings, so half-star scales work. A pair with an unknown side gets the distribution of the
baseline predictor's rating: the z whose expected rating is mu + b_u + b_i (base module).
A new user folds in like a dot-bias user (z is linear in [p_u, b_u]), through E[r | z] instead of
a sigmoid (``recommend.foldin``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from collabkit.core.loop import History, fit_one_cycle
from collabkit.data.interactions import Ratings
from collabkit.models import capabilities as can
from collabkit.models.base import CollabModel, Scorer, Sizes
from collabkit.models.config import SGDConfig
from collabkit.models.dot import BiasLinear, _table, write_rows
from collabkit.models.linear import EPS, Array

#: a scale with more distinct ratings than this is not a set of classes (continuous scores)
MAX_LEVELS = 20
#: stands in for +-infinity at the ends of the thresholds (finite: keeps gradients NaN-free)
FAR = 1e4
#: the smallest gap between thresholds (keeps them strictly ordered in float32)
MIN_GAP = 1e-3


@dataclass
class OrdinalConfig(SGDConfig):
    # the lowest validation log-loss (1.260; ECE of P(r >= 4) 0.023) on a tenth of ML-100k
    # u1.base, never its test part, among the chapter recipe and 8 variants of epochs and wd
    epochs: int = 8
    wd: float = 0.3
    # the rating levels l_1 < ... < l_K; () = the training data's
    levels: tuple[float, ...] = field(default=(), metadata={"increasing": True})


def levels_problem(n: int) -> str:
    """'' when ``n`` distinct ratings can be an ordinal model's classes, else what is wrong."""
    return "" if 2 <= n <= MAX_LEVELS else f"the ordinal model needs 2 to {MAX_LEVELS} distinct rating values, found {n}"


def rating_levels(ratings: Ratings) -> tuple[float, ...]:
    """The distinct ratings of ``ratings``, ascending: the classes of an ordinal model."""
    levels = np.unique(ratings.frame["rating"].to_numpy(np.float64))
    if problem := levels_problem(len(levels)):
        raise ValueError(f"{ratings.name}: {problem}")
    return tuple(float(v) for v in levels)


class OrdinalMF(BiasLinear, CollabModel):
    """P(rating level | user, item) by cumulative-link thresholds on p_u . q_i + b_u + b_i."""

    kind = "ordinal"
    Config = OrdinalConfig
    # fold-in of users and items: z is linear in either side's [factors, bias], the link is E[r | z]
    capabilities = frozenset({can.FOLD_IN, can.ITEM_FOLD_IN, can.UPDATE, can.FACTORS, can.RATINGS, can.PROBA, can.BIASES})
    wants_y_range = False
    bias_columns = (1, 1)
    user_item_tables: ClassVar[dict[str, str]] = {
        "user_factors.weight": "user",
        "item_factors.weight": "item",
        "user_bias.weight": "user",
        "item_bias.weight": "item",
    }

    def __init__(self, config: OrdinalConfig, users, items) -> None:
        super().__init__(config, users, items)
        if len(config.levels) < 2:
            raise ValueError("ordinal: config.levels needs at least 2 rating levels")
        self.user_factors = _table(len(users), config.n_factors)
        self.item_factors = _table(len(items), config.n_factors)
        self.user_bias = _table(len(users), 1)
        self.item_bias = _table(len(items), 1)
        k = len(config.levels)
        self.cut_first = nn.Parameter(torch.zeros(1))  # theta_1
        self.cut_gaps = nn.Parameter(torch.full((k - 2,), math.log(math.e - 1)))  # softplus = 1
        levels = torch.tensor(config.levels, dtype=torch.float32)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("steps", levels.diff(), persistent=False)  # l_{k+1} - l_k

    @classmethod
    def from_data(cls, ratings: Ratings, **config: Any) -> OrdinalMF:
        """Levels from ``ratings``; thresholds start at the logits of its cumulative level shares,
        so the untrained model (z = 0) already predicts the training distribution."""
        levels = tuple(config.pop("levels", ()) or rating_levels(ratings))
        model = super().from_data(ratings, levels=levels, **config)
        share = np.array([(ratings.frame["rating"] == v).mean() for v in levels])
        cum = np.clip(np.cumsum(share)[:-1], 1e-3, 1 - 1e-3)
        cum = np.maximum.accumulate(cum + np.arange(len(cum)) * 1e-4)  # strictly increasing
        theta = np.log(cum / (1 - cum))
        with torch.no_grad():
            model.cut_first.fill_(float(theta[0]))
            gaps = torch.tensor(np.diff(theta), dtype=torch.float32).sub(MIN_GAP).clamp(min=1e-3)
            model.cut_gaps.copy_(gaps + torch.log(-torch.expm1(-gaps)))  # softplus^-1
        return model

    def thresholds(self) -> Tensor:
        """(K-1,) theta_1 < ... < theta_{K-1}: the first cut plus cumulative positive gaps."""
        gaps = F.softplus(self.cut_gaps) + MIN_GAP
        return torch.cat([self.cut_first, self.cut_first + gaps.cumsum(0)])

    # --- the contract: representation [factors, bias]; the head is the expected rating ----
    def user_repr(self, u: Tensor) -> Tensor:
        return torch.cat([self.user_factors(u), self.user_bias(u)], 1)

    def item_repr(self, i: Tensor) -> Tensor:
        return torch.cat([self.item_factors(i), self.item_bias(i)], 1)

    def latent(self, ur: Tensor, ir: Tensor) -> Tensor:
        """(B, F+1), (B, F+1) -> (B,) z = p_u . q_i + b_u + b_i (broadcasts like head)."""
        return (ur[..., :-1] * ir[..., :-1]).sum(-1) + ur[..., -1] + ir[..., -1]

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        return self.expected(self.latent(ur, ir))

    def forward(self, u: Tensor, i: Tensor) -> Tensor:
        """(B,) latent scores z: what the training loss (``nll``) reads; ``head`` gives ratings."""
        dot = (self.user_factors(u) * self.item_factors(i)).sum(1)
        return dot + self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1)

    # --- from z to the distribution ---------------------------------------------------------
    def expected(self, z: Tensor) -> Tensor:
        """E[r | z] = l_K - sum_k (l_{k+1} - l_k) sigmoid(theta_k - z), any shape."""
        out = torch.full_like(z, float(self.levels[-1]))
        for theta, step in zip(self.thresholds(), self.steps):
            out = out - step * torch.sigmoid(theta - z)
        return out

    def expected_slope(self, z: Tensor) -> Tensor:
        """dE[r | z] / dz = sum_k (l_{k+1} - l_k) s_k (1 - s_k), s_k = sigmoid(theta_k - z)."""
        out = torch.zeros_like(z)
        for theta, step in zip(self.thresholds(), self.steps):
            s = torch.sigmoid(theta - z)
            out = out + step * s * (1 - s)
        return out

    def proba_repr(self, ur: Tensor, ir: Tensor) -> Tensor:
        """(..., F+1) user and item representations -> (..., K) P(r = l_k) (broadcasts)."""
        return self.proba(self.latent(ur, ir))

    def proba(self, z: Tensor) -> Tensor:
        """(B,) latent scores -> (B, K) P(r = l_k): differences of the cumulative sigmoids."""
        cdf = torch.sigmoid(self.thresholds() - z.unsqueeze(-1))  # (B, K-1)
        cdf = F.pad(F.pad(cdf, (1, 0), value=0.0), (0, 1), value=1.0)  # (B, K+1)
        return (cdf[..., 1:] - cdf[..., :-1]).clamp(min=0.0)

    def nll(self, z: Tensor, r: Tensor) -> Tensor:
        """Mean -log P(r | z) over the batch, in log space (stable far from the thresholds):
        sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - e^(b - a)) for a = theta_k - z,
        b = theta_{k-1} - z."""
        k = self.level_index(r)
        far = torch.full((1,), FAR)
        cuts = torch.cat([-far, self.thresholds(), far])  # (K+1,)
        a, b = cuts[k + 1] - z, cuts[k] - z
        return -(F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(b - a))).mean()

    def level_index(self, r: Tensor) -> Tensor:
        """(B,) ratings -> (B,) indices k of their levels (the nearest level)."""
        mid = (self.levels[1:] + self.levels[:-1]) / 2
        return torch.bucketize(r.to(mid.dtype), mid)

    @torch.no_grad()
    def latent_for(self, rating: Tensor, iters: int = 60) -> Tensor:
        """The z whose expected rating is ``rating`` (E[r | z] increases with z): bisection."""
        theta = self.thresholds()
        lo = torch.full_like(rating, float(theta[0]) - 30.0)
        hi = torch.full_like(rating, float(theta[-1]) + 30.0)
        for _ in range(iters):
            mid = (lo + hi) / 2
            above = self.expected(mid) > rating
            hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
        return (lo + hi) / 2

    @torch.no_grad()
    def latent_idx(self, u: Tensor, i: Tensor) -> Tensor:
        """(B,) z of index pairs; an unknown side (-1) gets the z of the baseline predictor."""
        ur = self.user_repr(u.clamp(min=0))
        ir = self.item_repr(i.clamp(min=0))
        z = self.latent(ur, ir)
        unknown = (u < 0) | (i < 0)
        if bool(unknown.any()):
            z[unknown] = self.latent_for(self.baseline(u[unknown], i[unknown]).float())
        return z

    @torch.no_grad()
    def predict_proba(self, users: Any, items: Any) -> np.ndarray:
        """(n, K) P(r = l_k) for raw (user, item) id pairs; columns follow ``config.levels``."""
        u = torch.from_numpy(self.users.lookup(users, strict=False))
        i = torch.from_numpy(self.items.lookup(items, strict=False))
        if len(u) != len(i):
            u, i = torch.broadcast_tensors(u, i)
        return self.predict_proba_idx(u, i).numpy()

    @torch.no_grad()
    def predict_proba_idx(self, u: Tensor, i: Tensor, batch_size: int = 1 << 16) -> Tensor:
        """(B, K) distributions of index pairs, in chunks."""
        was = self.training
        self.eval()
        parts = [self.proba(self.latent_idx(u[s : s + batch_size], i[s : s + batch_size]))
                 for s in range(0, len(u), batch_size)]  # fmt: skip
        self.train(was)
        return torch.cat(parts) if parts else torch.empty(0, len(self.levels))

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """Dot-bias's tables through autograd: an epoch is ~5 units per rating (the cross-entropy
        over the levels) and 0.23 per table cell (measured on ML-100k and Epinions); memory as
        dot-bias's."""
        f, epochs = cls.option(config, "n_factors"), cls.option(config, "epochs")
        cells = (sizes.users + sizes.items) * (f + 1)
        return epochs * (5.0 * sizes.n + 0.23 * cells), cells * 4 * 3 + sizes.n * 150

    @classmethod
    def sized(cls, config: dict[str, Any], sizes: Sizes, limit: float) -> tuple[dict[str, Any] | None, str]:
        """Skipped, with the reason, on data whose ratings are not a few levels (a continuous
        scale such as Jester's -10..10) unless the levels are given; else the memory rule."""
        if sizes.levels and not config.get("levels") and (problem := levels_problem(sizes.levels)):
            return None, f"skipped: {problem}"
        return super().sized(config, sizes, limit)

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """Expected ratings of every item by one matrix product (z) and the link."""
        ir = self.item_repr(self.catalogue(items))

        @torch.no_grad()
        def rank(ur: Tensor) -> Tensor:
            return self.expected(ur[:, :-1] @ ir[:, :-1].T + ur[:, -1:] + ir[:, -1].unsqueeze(0))

        return Scorer(rank)

    # --- fold-in: z is linear in [p_u, b_u] (BiasLinear); the link is E[r | z] -----------------
    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        write_rows(self, side, index, reprs)  # [factors, bias], as dot-bias

    def link(self, z: Array) -> tuple[Array, Array]:
        """E[r | z] and its slope; numpy in, numpy out (fold-in's compiled steps), else tensors."""
        t = torch.as_tensor(z)
        f, df = self.expected(t), self.expected_slope(t)
        return (f.detach().numpy(), df.detach().numpy()) if isinstance(z, np.ndarray) else (f, df)

    def link_inverse(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """The z whose expected rating is r (clipped EPS inside the levels), by bisection."""
        lo, hi = self.config.levels[0], self.config.levels[-1]
        r = r.clamp(lo + EPS * (hi - lo), hi - EPS * (hi - lo))
        values, where = torch.unique(r, return_inverse=True)  # a few levels: invert each once
        t = self.latent_for(values, iters=32)[where]  # bisection to ~1e-8
        return t, self.expected_slope(t)

    def link_is_identity(self) -> bool:
        return False

    # --- training: the one-cycle engine with the cross-entropy ------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, console: Any, progress: bool) -> History:
        values = torch.tensor(train.frame["rating"].to_numpy(np.float64))
        off = (values.unsqueeze(1) - self.levels.double()).abs().min(1).values > 1e-6
        if bool(off.any()):
            raise ValueError(
                f"{train.name}: rating {float(values[off][0])} is not one of the ordinal model's "
                f"levels {list(self.config.levels)}"
            )
        cfg = self.config

        def valid_nll(u: Tensor, i: Tensor, r: Tensor) -> Tensor:
            p = self.predict_proba_idx(u, i)
            return -p.gather(1, self.level_index(r).unsqueeze(1)).clamp(min=1e-12).log().mean()

        return fit_one_cycle(
            self, train, valid, epochs=cfg.epochs, lr_max=cfg.lr_max, wd=cfg.wd, bs=cfg.bs,
            seed=cfg.seed, console=console, progress=progress, loss_fn=self.nll,
            valid_fn=valid_nll,
        )  # fmt: skip

