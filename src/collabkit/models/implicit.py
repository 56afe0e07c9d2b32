"""Ranking models for implicit feedback (bought, clicked, watched): most-popular, EASE, iALS, BPR.

Each honours the CollabModel contract, score = head(user_repr(u), item_repr(i)), so top-N,
save/load, similar items and the PCA map work unchanged, and each trains the same way, on
interactions from ``to_implicit`` (rating column = weight w_ui > 0, 1 for plain positives):

    model = ALS.from_data(train, n_factors=64); history = model.fit(train)

    most-popular  s(u, i) = sum_v w_vi                 the baseline every model must beat
    ease          s(u, i) = x_u . B[:, i]              Steck 2019, closed form (item-item)
    als           s(u, i) = x_u . y_i                  Hu, Koren & Volinsky 2008, alternating CG solves
    bpr           s(u, i) = x_u . y_i + b_i            Rendle et al. 2009, AdamW on sampled pairs

Default hyper-parameters were chosen on ML-100k as implicit (rating >= 4) by NDCG@10 on a
validation split carved from the training part only (``bench/implicit.py --tune``), never on
the test split: validation NDCG@10 0.226 for EASE (reg 300), 0.231 for iALS (64 factors, reg 50,
alpha 10), 0.222 for BPR (lr_max 3e-2, wd 1, uniform negatives), 0.115 for most-popular. An unknown user or item gets the all-zero representation, as everywhere: score 0
(most-popular still ranks by popularity, its user representation being empty).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from rich.console import Console
from torch import Tensor, nn

from collabkit.core import kernels
from collabkit.core.loop import History, pass_threads
from collabkit.core.sampling import Distribution, fit_ranking
from collabkit.data.implicit import Interactions, interactions
from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models import linear
from collabkit.models.base import (
    BIASES,
    FACTORS,
    FOLD_IN,
    ITEM_FOLD_IN,
    CollabModel,
    Scorer,
    Sizes,
    dense_rows,
    require,
)
from collabkit.models.config import ModelConfig
from collabkit.models.dot import BiasConfig, DotProduct, DotProductBias
from collabkit.models.linear import UserPrior

KINDS = ("most-popular", "ease", "als", "bpr")


class ImplicitModel:
    """Mixin for models fitted to implicit interactions: ranking scores, no y_range, and an exact
    ``fold_in(items, weights)`` of their own for new users (an answer's value is its weight, 1 =
    interacted, as in training; no prior needed)."""

    wants_y_range: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({FOLD_IN, FACTORS})

    @torch.no_grad()
    def user_prior(self, ratings: Ratings | None = None, noise_var: float | None = None) -> UserPrior:
        """Only the average-taste user (the fallback) matters: the exact fold-in needs no prior,
        so nothing is calibrated."""
        return linear.measure_prior(self, ratings, 1.0 if noise_var is None else noise_var)  # type: ignore[arg-type]

    @torch.no_grad()
    def item_prior(self, ratings: Ratings | None = None, noise_var: float | None = None) -> UserPrior:
        """The mirror of ``user_prior``, for kinds that fold in items exactly (ITEM_FOLD_IN)."""
        require(self, ITEM_FOLD_IN)  # type: ignore[arg-type]
        return linear.measure_prior(self, ratings, 1.0 if noise_var is None else noise_var, side="item")  # type: ignore[arg-type]

    @classmethod
    def from_data(cls, ratings: Ratings, **config: Any) -> CollabModel:
        model = super().from_data(ratings, **config)  # type: ignore[misc]
        model.meta["implicit"] = True
        return model

    def _interactions(self, train: Ratings) -> Interactions:
        return interactions(train, self.users, self.items)  # type: ignore[attr-defined]


# --- most popular -------------------------------------------------------------------------------
@dataclass
class PopularConfig(ModelConfig):
    # not used: there is nothing per user to learn
    n_factors: int = field(default=0, metadata={"min": 0, "max": 0})


class MostPopular(ImplicitModel, CollabModel):
    """s(u, i) = total weight of item i in training (its number of users for 0/1 data), for everyone."""

    kind = "most-popular"
    Config = PopularConfig
    capabilities = frozenset({FOLD_IN, ITEM_FOLD_IN})

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """A count per item: one pass over the interactions, their encoded ids."""
        return sizes.n * 0.4, sizes.n * 50.0 + sizes.items * 8.0

    def __init__(self, config: PopularConfig, users: Vocab, items: Vocab) -> None:
        super().__init__(config, users, items)
        self.register_buffer("popularity", torch.zeros(len(items)))

    def _fit(
        self, train: Ratings, valid: Ratings | None, console: Console | None, progress: bool
    ) -> History:
        t0 = time.perf_counter()
        data = self._interactions(train)
        pop = np.bincount(data.items, weights=data.weights, minlength=len(self.items))
        self.popularity.copy_(torch.from_numpy(pop))
        return History([], time.perf_counter() - t0)

    def user_repr(self, u: Tensor) -> Tensor:
        return torch.zeros(len(u), 0)

    def item_repr(self, i: Tensor) -> Tensor:
        return self.popularity[i].unsqueeze(1)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        return ir[:, 0].expand(max(len(ur), len(ir)))

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """Every user's list is the catalogue by popularity (a matrix of its own per call: top-N
        masks it in place)."""
        pop = self.popularity[self.catalogue(items)]
        return Scorer(lambda ur: pop.repeat(len(ur), 1), shared=pop)

    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """Nothing of the user enters the score: z = popularity_i."""
        return torch.zeros(*items.shape, 0, dtype=torch.float64), self.popularity[items.clamp(min=0)].double()

    def fold_in(self, items: Tensor, values: Tensor | None = None, prior: UserPrior | None = None) -> Tensor:
        """A new user's representation: empty, like everyone's (the list is the same for all)."""
        single = items.dim() == 1
        out = torch.zeros(len(torch.atleast_2d(items)), 0)
        return out[0] if single else out

    @torch.no_grad()
    def fold_in_items(self, users: Tensor, values: Tensor | None = None, prior: UserPrior | None = None) -> Tensor:
        """A new item's popularity, exactly as training counts it: the sum of its weights."""
        single = users.dim() == 1
        users = torch.atleast_2d(users)
        w = torch.ones(users.shape) if values is None else torch.atleast_2d(values).float()
        out = (w * (users >= 0)).sum(1, keepdim=True)
        return out[0] if single else out

    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        if side == "item":
            self.popularity[index] = reprs[:, 0].to(self.popularity.dtype)


# --- EASE ---------------------------------------------------------------------------------------
#: EASE fits with dense n_items x n_items matrices: two float64 ones at a time (X^T X, its Cholesky
#: factor, the inverse) beside the float32 weights, 20 bytes a cell: 20 000 items take 7.5 GB.
#: Larger catalogues are refused before anything is built.
EASE_MAX_ITEMS = 20_000
EASE_BYTES_PER_CELL = 20
#: the loss's dense blocks of user rows hold about this many numbers
EASE_CHUNK_CELLS = 1 << 22
@dataclass
class EASEConfig(ModelConfig):
    # not used: the representations are catalogue-wide (n_items numbers)
    n_factors: int = field(default=0, metadata={"min": 0, "max": 0})
    # lambda, the ridge penalty on B (tuned, see the module docstring); > 0 keeps X^T X + reg I invertible
    reg: float = field(default=300.0, metadata={"gt": 0})

    def fit_bytes(self, n_users: int, n_items: int, n_ratings: int, weight_bytes: int) -> int:
        """EASE_BYTES_PER_CELL a cell of the item x item matrices, less the float32 B counted as weights."""
        return (EASE_BYTES_PER_CELL - 4) * n_items * n_items


class EASE(ImplicitModel, CollabModel):
    """Embarrassingly shallow autoencoder (Steck 2019): scores = X B, with B item x item, diag(B) = 0.

    B = argmin ||X - X B||^2 + reg ||B||^2 subject to diag(B) = 0 has the closed form
    P = (X^T X + reg I)^-1,  B = I - P diag(1 / diag(P)), i.e. B_ij = -P_ij / P_jj.
    user_repr(u) = x_u, the user's training row (n_items weights; kept as CSR buffers so it is
    saved with the model), item_repr(i) = B[:, i]; head = dot product.
    """

    kind = "ease"
    Config = EASEConfig

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """The dense items x items Gram matrix and its inverse (~n^3 / 3 flops at ~1e4 per unit)."""
        return sizes.items**3 / 3e4 + sizes.n, EASE_BYTES_PER_CELL * float(sizes.items) ** 2
    data_sized = ("history_items", "history_weights")  # length = nnz, known only from the data

    def __init__(self, config: EASEConfig, users: Vocab, items: Vocab) -> None:
        n = len(items)
        if n > EASE_MAX_ITEMS:  # before the n x n buffer below is allocated
            raise ValueError(
                f"EASE needs dense {n:,} x {n:,} item matrices (about {EASE_BYTES_PER_CELL * n * n / 2**30:.0f} GB "
                f"while fitting); its limit is {EASE_MAX_ITEMS:,} items "
                "(collabkit.models.implicit.EASE_MAX_ITEMS). For a larger catalogue use als or bpr."
            )
        super().__init__(config, users, items)
        self.register_buffer("B", torch.zeros(n, n))
        self.register_buffer("history_indptr", torch.zeros(len(users) + 1, dtype=torch.int64))
        self.register_buffer("history_items", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("history_weights", torch.zeros(0))

    def _fit(
        self, train: Ratings, valid: Ratings | None, console: Console | None, progress: bool
    ) -> History:
        """One regularised inverse; the History's single row holds the objective it minimised."""
        t0 = time.perf_counter()
        data = self._interactions(train)
        n = len(self.items)
        G = torch.zeros(n, n, dtype=torch.float64)  # X^T X, a block of users at a time
        for Xc in _user_blocks(data):
            G += torch.sparse.mm(Xc.t().coalesce(), Xc.to_dense())
        G.diagonal().add_(self.config.reg)
        L = torch.linalg.cholesky(G)
        del G
        P = torch.cholesky_inverse(L)
        del L
        B = P.div_(-P.diagonal())  # column j divided by -P_jj, in place
        B.diagonal().zero_()
        self.B.copy_(B)
        self.history_indptr = torch.from_numpy(data.indptr)
        self.history_items = torch.from_numpy(data.items)
        self.history_weights = torch.from_numpy(data.weights)
        loss = _ease_residual(data, B) + self.config.reg * float(B.pow(2).sum())
        seconds = time.perf_counter() - t0
        if console is not None:
            console.print(
                f"EASE: {len(self.items)} x {len(self.items)} item weights in {seconds:.2f}s"
            )
        return History([{"epoch": 0, "train_loss": loss, "time": seconds}], seconds)

    def user_repr(self, u: Tensor) -> Tensor:
        """(B,) user indices -> (B, n_items) training rows x_u (dense, gathered from the CSR)."""
        return dense_rows(
            self.history_indptr, self.history_items, self.history_weights, u, len(self.items)
        )

    def item_repr(self, i: Tensor) -> Tensor:
        return self.B.index_select(1, i).T  # (len(i), n_items): column i of B

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        return (ur * ir).sum(-1)

    def _score(self, u: Tensor, i: Tensor) -> Tensor:
        """Pairs via full rows x_u B of the distinct users (never a (pairs, n_items) product)."""
        uu, inv = torch.unique(u, return_inverse=True)
        out = torch.empty(len(u))
        for s in range(0, len(uu), 1024):
            pick = (inv >= s) & (inv < s + 1024)
            full = self.score_all_items(uu[s : s + 1024])
            out[pick] = full[inv[pick] - s, i[pick].clamp(min=0)]
        return torch.where(i >= 0, out, torch.zeros(()))

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """x_u B for a chunk of users: (U, N) @ (N, N) (item_repr = B^T is implied)."""
        B = self.B if items is None else self.B[:, items]
        return Scorer(lambda ur: ur.to(B.dtype) @ B)

    @torch.no_grad()
    def fold_in(self, items: Tensor, values: Tensor | None = None, prior: UserPrior | None = None) -> Tensor:
        """(U, m) item indices (-1 = padding) [and weights] -> (U, n_items) rows x_u: EASE's exact fold-in."""
        single = items.dim() == 1
        items = torch.atleast_2d(items)
        w = torch.ones(items.shape) if values is None else torch.atleast_2d(values).float()
        out = torch.zeros(len(items), len(self.items) + 1)
        out.scatter_add_(1, torch.where(items >= 0, items, len(self.items)), w)
        return out[0, :-1] if single else out[:, :-1]


# --- iALS ---------------------------------------------------------------------------------------
@dataclass
class ALSConfig(ModelConfig):
    n_factors: int = 64
    # lambda on ||X||^2 + ||Y||^2 (the best reg grows with alpha: ~5 alpha)
    reg: float = field(default=50.0, metadata={"min": 0})
    # confidence c_ui = 1 + alpha * w_ui on observed pairs, 1 elsewhere
    alpha: float = field(default=10.0, metadata={"min": 0})
    # alternating sweeps (users then items); fit goes on from the current factors
    iterations: int = field(default=15, metadata={"min": 0})

    def fit_bytes(self, n_users: int, n_items: int, n_ratings: int, weight_bytes: int) -> int:
        """Both sides' CSR rows (int64 offsets, int32 columns, float32 confidences) and a working
        copy of the factors."""
        return 2 * 8 * n_ratings + 8 * (n_users + n_items) + weight_bytes


class ALS(ImplicitModel, DotProduct):
    """Weighted matrix factorisation by alternating least squares (Hu, Koren & Volinsky 2008).

    Minimises  L = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (||X||^2 + ||Y||^2)  over ALL pairs,
    with p_ui = 1 where observed (0 elsewhere) and c_ui = 1 + alpha * w_ui (1 elsewhere). With Y
    fixed each x_u has the closed form
        x_u = (Y^T Y + Y^T (C_u - I) Y + reg I)^-1 Y^T C_u p_u,
    and symmetrically for y_i. As in the implicit package, each half-step takes CG_STEPS conjugate-
    gradient steps towards it from the previous factors (float32, row by row in a compiled
    kernel, no (U, F, F) block: ``_als_half_step``); on ML-100k (>= 4) this gives the exact
    solves' NDCG@10 (0.3144 vs 0.3145, 15 iterations) about 30x faster than the float64 batched
    Cholesky it replaced. Each CG step lowers the block objective, so L never rises.
    """

    kind = "als"
    Config = ALSConfig
    capabilities = frozenset({FOLD_IN, ITEM_FOLD_IN, FACTORS})

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """A sweep: CG half-steps over both sides, ~F units per interaction and F^2 / 10 per row;
        the factors, the rows of both sides (CSR) and their confidences."""
        f, sweeps = cls.option(config, "n_factors"), cls.option(config, "iterations")
        rows = sizes.users + sizes.items
        return sweeps * (sizes.n * f / 8 + rows * f * f / 10), rows * f * 4 * 3 + sizes.n * 40

    def _fit(
        self, train: Ratings, valid: Ratings | None, console: Console | None, progress: bool
    ) -> History:
        """The config's ``iterations`` sweeps; History rows hold L after each sweep.

        Starts from the current factors (a new model's are N(0, 0.01)), so a second call goes on.
        """
        cfg = self.config
        n_iter = cfg.iterations
        if n_iter < 0:
            raise ValueError(f"iterations must be >= 0, got {n_iter}")
        data = self._interactions(train)
        by_user, by_item = _als_rows(data, cfg.alpha), _als_rows(data.transpose(), cfg.alpha)
        del data  # the rows share its item indices; its weights are no longer needed
        X = self.user_factors.weight.detach().clone()
        Y = self.item_factors.weight.detach().clone()
        history = History()
        threads_was = torch.get_num_threads()
        torch.set_num_threads(pass_threads(len(by_user.cols)))
        try:
            history.setup_seconds = kernels.load_als()
            t_start = time.perf_counter()
            for it in range(n_iter):
                t0 = time.perf_counter()
                _als_half_step(by_user, Y, X, cfg.reg)
                _als_half_step(by_item, X, Y, cfg.reg)
                loss = _als_loss(by_user, X, Y, cfg.reg)
                history.rows.append({"epoch": it, "train_loss": loss, "time": time.perf_counter() - t0})
                if console is not None:
                    console.print(f"{it:>5} {loss:14.4f} {history.rows[-1]['time']:6.2f}s")
        finally:
            torch.set_num_threads(threads_was)
        history.fit_seconds = time.perf_counter() - t_start
        with torch.no_grad():
            self.user_factors.weight.copy_(X)
            self.item_factors.weight.copy_(Y)
        self.eval()
        return history

    @torch.no_grad()
    def fold_in(self, items: Tensor, values: Tensor | None = None, prior: UserPrior | None = None) -> Tensor:
        """(U, m) item indices (-1 = padding) [and weights w] -> (U, F) user factors, items fixed.

        The exact iALS user solve above (what ``fit`` would give the user), for users it never saw.
        """
        return self._solve(self.item_factors.weight, items, values)

    @torch.no_grad()
    def fold_in_items(self, users: Tensor, values: Tensor | None = None, prior: UserPrior | None = None) -> Tensor:
        """(I, m) user indices (-1 = padding) [and weights] -> (I, F) item factors, users fixed:
        the exact iALS item solve (the loss is symmetric in users and items)."""
        return self._solve(self.user_factors.weight, users, values)

    def _solve(self, fixed: Tensor, others: Tensor, values: Tensor | None) -> Tensor:
        """x = (Y^T Y + Y_r^T (C_r - I) Y_r + reg I)^-1 Y_r^T C_r p_r for each row r, Y the
        ``fixed`` side's factors and Y_r those of the row's ``others`` (-1 = padding)."""
        single = others.dim() == 1
        others = torch.atleast_2d(others)
        w = torch.ones(others.shape, dtype=torch.float64) if values is None else torch.atleast_2d(values).double()
        w = w * (others >= 0)
        Y = fixed.double()
        Yr = Y[others.clamp(min=0)]  # (R, m, F)
        c1 = self.config.alpha * w  # (R, m) c - 1, 0 on padding
        A = Y.T @ Y + (Yr * c1.unsqueeze(-1)).mT @ Yr + self.config.reg * torch.eye(Y.shape[1], dtype=torch.float64)
        b = (Yr * ((1 + c1) * (w > 0)).unsqueeze(-1)).sum(1)  # (R, F) = Y^T C_r p_r
        x = torch.linalg.solve(A, b).float()
        return x[0] if single else x


#: conjugate-gradient steps per row and half-step, warm-started from the previous factors (as the
#: implicit package does); 3 gives the exact solve's NDCG@10 on ML-100k (see ALS)
CG_STEPS = 3


@dataclass
class _ALSRows:
    """One side of the iALS problem as CSR: row r's columns and their c - 1 = alpha w_rc."""

    indptr: np.ndarray  # (R + 1,) int64
    cols: np.ndarray  # (nnz,) int32
    extra: np.ndarray  # (nnz,) float32: c_rc - 1


def _als_rows(data: Interactions, alpha: float) -> _ALSRows:
    extra = data.weights.astype(np.float32, copy=False) * np.float32(alpha)
    return _ALSRows(data.indptr.astype(np.int64, copy=False), data.items, extra)


@torch.no_grad()
def _als_half_step(rows: _ALSRows, Y: Tensor, X: Tensor, reg: float, steps: int = CG_STEPS) -> None:
    """Improve every row of X in place towards x_r = (Y^T Y + sum_c extra_rc y_c y_c^T + reg I)^-1
    sum_c (1 + extra_rc) y_c, by ``steps`` conjugate-gradient steps from the current x_r.

    A p = (Y^T Y + reg I) p + sum_c extra_rc (y_c . p) y_c: O(nnz_r F + F^2) per row and step,
    and CG needs nothing else, so no (R, F, F) block is built; the compiled kernel keeps three
    F-vectors per thread. Each CG step lowers the convex block objective, so the iALS loss
    never rises.
    """
    G = Y.T @ Y + reg * torch.eye(Y.shape[1], dtype=Y.dtype)  # (F, F), shared by all rows
    kernels.als_cg_(rows.indptr, rows.cols, rows.extra, Y, G, X, steps)


def _als_loss(rows: _ALSRows, X: Tensor, Y: Tensor, reg: float) -> float:
    """L = sum_all s^2 + sum_obs [c (1 - s)^2 - s^2] + reg (||X||^2 + ||Y||^2), s = x_u . y_i.

    The all-pairs term is sum((X^T X) * (Y^T Y)), so L costs O(nnz F + (U + N) F^2), not O(U N F);
    the observed terms are summed in float64 by a compiled pass over the interactions.
    """
    XX, YY = (X.T @ X).double(), (Y.T @ Y).double()
    total = float((XX * YY).sum()) + kernels.als_observed_loss(rows.indptr, rows.cols, rows.extra, X, Y)
    # ||X||^2 = trace(X^T X): no float64 copy of the factor tables (200 MB at 200 k users)
    return total + reg * float(XX.trace() + YY.trace())


# --- BPR ----------------------------------------------------------------------------------------
@dataclass
class BPRConfig(BiasConfig):
    n_factors: int = 64
    y_range: tuple[float, float] | None = None  # scores are for ranking: no squashing
    # the recipe (tuned, module docstring): one-cycle AdamW on sampled (u, i, j) triples
    epochs: int = 40
    lr_max: float = 3e-2  # used as is: tuned at this batch size
    wd: float = 1.0
    bs: int | None = 1024
    sampler: Distribution = "uniform"  # negatives: uniform, or by popularity ** power
    n_negatives: int = field(default=4, metadata={"min": 1})  # negatives per positive
    power: float = 0.75


class BPR(ImplicitModel, DotProductBias):
    """Bayesian personalised ranking (Rendle et al. 2009): s(u, i) = x_u . y_i + b_i.

    Trained by the shared one-cycle engine on (u, i, j) triples, i a training positive of u and
    j a sampled negative, minimising  -log sigmoid(s(u, i) - s(u, j))  with decoupled weight decay
    as the L2 prior (``core.sampling.fit_ranking``). A user bias would cancel in s(u, i) - s(u, j),
    so it is frozen at 0; the dot-bias layout is kept so that fold-in, explanations and similar
    items treat BPR exactly like dot-bias.
    """

    kind = "bpr"
    Config = BPRConfig
    capabilities = frozenset({FOLD_IN, FACTORS, BIASES})
    user_item_tables: ClassVar[dict[str, str]] = {
        "user_factors.weight": "user",
        "item_factors.weight": "item",
        "item_bias.weight": "item",
    }

    def __init__(self, config: BPRConfig, users: Vocab, items: Vocab) -> None:
        super().__init__(config, users, items)
        nn.init.normal_(self.user_factors.weight, 0.0, 0.1)
        nn.init.normal_(self.item_factors.weight, 0.0, 0.1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.user_bias.weight.requires_grad_(False)

    def forward(self, u: Tensor, i: Tensor) -> Tensor:
        # the training path: x_u . y_i + b_i (the frozen user bias is 0, and the trainer's gathered
        # sub-tables do not include it)
        return (self.user_factors(u) * self.item_factors(i)).sum(1) + self.item_bias(i).squeeze(1)

    def _fit(
        self, train: Ratings, valid: Ratings | None, console: Console | None, progress: bool
    ) -> History:
        """``core.sampling.fit_ranking`` with the config's recipe."""
        c = self.config
        return fit_ranking(
            self, train, valid, epochs=c.epochs, lr_max=c.lr_max, wd=c.wd, bs=c.bs or 1024,
            sampler=c.sampler, n_negatives=c.n_negatives, power=c.power, seed=c.seed,
            console=console, progress=progress,
        )  # fmt: skip

    fold_in_per_user = False  # one L-BFGS over the batch: its steps depend on every user in it

    @torch.enable_grad()
    def fold_in(self, items: Tensor, values: Tensor | None = None, prior: UserPrior | None = None) -> Tensor:
        """(U, m) item indices (-1 = padding) [and weights] -> (U, F + 1) user reprs, items fixed.

        Minimises the BPR loss of the user's items against every other item of the catalogue
        (no sampling: one user is cheap) plus ``BPR_FOLD_REG * |x|^2``, by L-BFGS from x = 0.
        """
        single = items.dim() == 1
        items = torch.atleast_2d(items)
        w = torch.ones(items.shape) if values is None else torch.atleast_2d(values).float()
        w = w * (items >= 0)
        Y = self.item_factors.weight.detach()
        b = self.item_bias.weight.detach().squeeze(1)
        chunks = torch.split(torch.arange(len(items)), 64)  # bounds the (U, m, N) pair tensor
        out = [_bpr_user_solve(Y, b, items[rows].clamp(min=0), w[rows], BPR_FOLD_REG, BPR_FOLD_STEPS) for rows in chunks]
        x = torch.cat(out) if out else torch.empty(0, Y.shape[1])
        x = torch.cat([x, torch.zeros(len(x), 1)], 1)  # user_repr's layout: factors, bias (0)
        return x[0] if single else x


#: BPR fold-in: the L2 penalty on a new user's factors and the L-BFGS iterations
BPR_FOLD_REG, BPR_FOLD_STEPS = 0.01, 60


def _bpr_user_solve(Y: Tensor, b: Tensor, items: Tensor, w: Tensor, reg: float, steps: int) -> Tensor:
    """argmin_x  sum_u mean_{i in u, j not in u} w_ui softplus(s_uj - s_ui) + reg |x_u|^2."""
    neg = torch.ones(len(items), len(b))
    neg.scatter_(1, items, (w <= 0).float())  # a user's own items are not negatives
    x = torch.zeros(len(items), Y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([x], max_iter=steps, tolerance_grad=1e-5, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        opt.zero_grad()
        s = x @ Y.T + b  # (U, N)
        diff = s.gather(1, items).unsqueeze(2) - s.unsqueeze(1)  # (U, m, N): s_i - s_j
        pair = nn.functional.softplus(-diff) * neg.unsqueeze(1)
        per_user = (pair.sum(2) * w).sum(1) / (w.sum(1) * neg.sum(1)).clamp(min=1)
        total = per_user.sum() + reg * x.pow(2).sum()
        total.backward()
        return total

    opt.step(loss)
    return x.detach() * (w.sum(1, keepdim=True) > 0)


# --- helpers ------------------------------------------------------------------------------------
def _ease_residual(data: Interactions, B: Tensor) -> float:
    """||X - X B||^2, a block of users at a time."""
    return sum(float((Xc.to_dense() - torch.sparse.mm(Xc, B)).pow(2).sum()) for Xc in _user_blocks(data))


def _user_blocks(data: Interactions) -> Iterator[Tensor]:
    """X (float64) as sparse blocks of consecutive users whose dense form holds ~EASE_CHUNK_CELLS
    numbers: EASE never builds the dense users x items matrix."""
    n = data.n_items
    step = max(1, EASE_CHUNK_CELLS // max(1, n))
    users = data.users
    for r0 in range(0, data.n_users, step):
        r1 = min(data.n_users, r0 + step)
        lo, hi = int(data.indptr[r0]), int(data.indptr[r1])
        idx = torch.stack([torch.from_numpy(users[lo:hi] - r0), torch.from_numpy(data.items[lo:hi])])
        values = torch.from_numpy(data.weights[lo:hi].astype(np.float64))
        yield torch.sparse_coo_tensor(idx, values, (r1 - r0, n), check_invariants=False).coalesce()
