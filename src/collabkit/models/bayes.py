"""Bayesian probabilistic matrix factorisation (Salakhutdinov & Mnih 2008), with biases, by Gibbs sampling.

    r_ui ~ N(mu + b_u + c_i + p_u . v_i, 1 / alpha)
    [p_u, b_u] ~ N(m_U, L_U^-1),  [v_i, c_i] ~ N(m_V, L_V^-1),  (m, L) ~ Normal-Wishart(0, 2, I, d)
    alpha ~ Gamma(1, 1)

Each Gibbs sweep draws the hyper-parameters, then every user's [p_u, b_u] from its Gaussian
conditional (one batched Cholesky), then every item's, then alpha. The prediction is the
posterior mean, the average over the kept samples s of mu + b_u^s + c_i^s + p_u^s . v_i^s.
Averaging over the posterior instead of fitting one point estimate is what makes BPMF hard to
overfit on small data, with nothing to tune but the width and the number of sweeps.

That average is exactly one dot product: concatenating the S samples' factors, each scaled by
S^-1/2, gives tables of width n_factors * samples, and the biases average (mu goes into the item
bias). So the trained model IS a DotProductBias and everything built on it (top-N, biases, fold-in,
save/load) works unchanged; its predictions are clipped to the rating scale (``clip``).
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
from collabkit.models.autorec import STEP_WORK
from collabkit.models.base import UPDATE, CollabModel, Sizes
from collabkit.models.config import ModelConfig
from collabkit.models.dot import DotProductBias, _table


@dataclass
class BayesConfig(ModelConfig):
    n_factors: int = 10  # width of one posterior sample (the tables hold n_factors * samples)
    samples: int = field(default=130, metadata={"min": 1})  # Gibbs sweeps kept and averaged
    # sweeps discarded first, while the chain forgets its random start
    burn_in: int = field(default=20, metadata={"min": 0})
    y_range: tuple[float, float] | None = None  # no sigmoid: the model is linear in each side
    # predictions clipped here; from_data sets the scale
    clip: tuple[float, float] | None = field(default=None, metadata={"increasing": True})

    def fit_bytes(self, n_users: int, n_items: int, n_ratings: int, weight_bytes: int) -> int:
        """The kept samples, float32 (samples, rows, n_factors + 1) per side, beside the float64
        chain and one sweep's per-rating temporaries (about 64 bytes a rating)."""
        d = self.n_factors + 1
        return 4 * self.samples * (n_users + n_items) * d + 8 * 3 * (n_users + n_items) * d + 64 * n_ratings


class BayesianMF(DotProductBias):
    """BPMF by Gibbs sampling (module docstring); ``fit(train)`` samples, there is no gradient training."""

    kind = "bpmf"
    Config = BayesConfig
    wants_y_range = False
    # a fit draws a new chain from a random start: nothing to go on from (no UPDATE)
    capabilities = DotProductBias.capabilities - {UPDATE}

    def __init__(self, config: BayesConfig, users: Vocab, items: Vocab) -> None:
        # Not DotProductBias.__init__: the tables are n_factors * samples wide (concatenated samples)
        CollabModel.__init__(self, config, users, items)
        width = config.n_factors * config.samples
        self.user_factors = _table(len(users), width)
        self.item_factors = _table(len(items), width)
        self.user_bias = _table(len(users), 1)
        self.item_bias = _table(len(items), 1)
        self.requires_grad_(False)  # filled by Gibbs sampling, never by an optimiser

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """A sweep: the d x d outer products per rating, (0.38 + 0.0015 d^2) units a rating, and a
        batched d x d Cholesky and two triangular solves per row, (0.8 + 0.095 d^2) a row (fitted
        to sweeps on ML-100k u1 and Epinions at d = 3 to 21, one thread: within 15%). Memory:
        the kept samples three times (the samples, the concatenated tables and their copy while
        storing) and a sweep's temporaries (``_sweep_bytes``)."""
        d = cls.option(config, "n_factors") + 1
        samples = cls.option(config, "samples")
        sweeps = samples + cls.option(config, "burn_in")
        work = sweeps * (sizes.n * (0.38 + 0.0015 * d * d) + (sizes.users + sizes.items) * (0.8 + 0.095 * d * d) + STEP_WORK)
        return work, _sample_bytes(d, samples, sizes) + _sweep_bytes(d, sizes)

    @classmethod
    def sized(cls, config: dict[str, Any], sizes: Sizes, limit: float) -> tuple[dict[str, Any] | None, str]:
        """Fewer kept posterior samples when all of them do not fit (at least MIN_SAMPLES), then
        fewer factors (halved, down to 2): on sparse data the averaged biases carry most of it."""
        _, mem = cls.cost(config, sizes)
        if mem <= limit:
            return config, ""
        f, asked = cls.option(config, "n_factors"), cls.option(config, "samples")
        while f >= 2:
            d = f + 1
            keep = min(asked, int((limit - _sweep_bytes(d, sizes)) / _sample_bytes(d, 1, sizes)))
            if keep >= MIN_SAMPLES:
                changes = {"n_factors": f, "samples": keep}
                what = [f"{v} {k.replace('n_', '')} instead of {cls.option(config, k)}" for k, v in changes.items() if v != cls.option(config, k)]
                return {**config, **changes}, f"shrunk to fit {limit / 1e9:.2f} GB: {', '.join(what)}"
            f = f // 2 if f > 2 else 0
        return None, f"skipped: its posterior samples would need ~{mem / 1e9:.1f} GB (> {limit / 1e9:.2f} GB)"

    def _squash(self, x: Tensor) -> Tensor:
        c = self.config.clip
        return x if c is None else x.clamp(*c)

    def _squash_(self, x: Tensor) -> Tensor:
        c = self.config.clip
        return x if c is None else x.clamp_(*c)

    @torch.no_grad()
    def _fit(self, train: Ratings, valid: Ratings | None, console: Any, progress: bool) -> History:
        """Run burn_in + samples Gibbs sweeps on ``train``; the History has one row per sweep."""
        cfg: BayesConfig = self.config
        t_start = time.perf_counter()
        data = encode(self, train)
        u, i = data.users, data.items
        r = data.ratings.double()
        mu = float(r.mean())
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        k, d = cfg.n_factors, cfg.n_factors + 1
        n_users, n_items = len(self.users), len(self.items)
        U = torch.randn(n_users, d, generator=gen, dtype=torch.float64) * 0.1  # rows [p_u, b_u]
        V = torch.randn(n_items, d, generator=gen, dtype=torch.float64) * 0.1  # rows [v_i, c_i]
        alpha = 2.0
        # kept samples, allocated once: small tensors appended between the sweeps' large
        # temporaries fragmented the heap (peak RSS grew ~5 MB a sweep)
        kept_u = torch.empty(cfg.samples, n_users, d, dtype=torch.float32)
        kept_v = torch.empty(cfg.samples, n_items, d, dtype=torch.float32)
        history = History()
        # a sweep is many small batched solves: thread hand-offs cost more than they save (a
        # sweep at d = 21 on ML-100k u1: 0.10-0.12 s on one thread, 0.16-0.20 s on two, 2 cores)
        threads_was = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for sweep in range(cfg.burn_in + cfg.samples):
                t0 = time.perf_counter()
                # user side: the target r - mu - c_i is linear in [p_u, b_u] with features [v_i, 1]
                U = _draw_rows(u, i, r - mu - V[i, k], _with_ones(V, k), U, alpha, rng, gen)
                V = _draw_rows(i, u, r - mu - U[u, k], _with_ones(U, k), V, alpha, rng, gen)
                err = r - mu - (U[u, :k] * V[i, :k]).sum(1) - U[u, k] - V[i, k]
                sse = float(err.pow(2).sum())
                alpha = float(rng.gamma(1 + len(r) / 2, 1 / (1 + sse / 2)))  # Gamma(shape, scale)
                if sweep >= cfg.burn_in:
                    kept_u[sweep - cfg.burn_in] = U
                    kept_v[sweep - cfg.burn_in] = V
                history.rows.append(
                    {"epoch": sweep, "train_loss": sse / len(r), "time": time.perf_counter() - t0}
                )
                if console is not None and (sweep + 1) % 25 == 0:
                    console.print(
                        f"BPMF sweep {sweep + 1}: train mse {sse / len(r):.4f}, alpha {alpha:.3f}"
                    )
        finally:
            torch.set_num_threads(threads_was)
        self._store(kept_u, kept_v, mu)
        history.fit_seconds = time.perf_counter() - t_start
        self.eval()
        return history

    def _store(self, Us: Tensor, Vs: Tensor, mu: float) -> None:
        """(S, n, k+1) samples -> tables: factors concatenated and scaled by S^-1/2, biases averaged."""
        S, k = Us.shape[0], self.config.n_factors
        scale = S**-0.5
        self.user_factors.weight.copy_(
            Us[:, :, :k].permute(1, 0, 2).reshape(Us.shape[1], S * k) * scale
        )
        self.item_factors.weight.copy_(
            Vs[:, :, :k].permute(1, 0, 2).reshape(Vs.shape[1], S * k) * scale
        )
        self.user_bias.weight.copy_(Us[:, :, k:].mean(0))
        self.item_bias.weight.copy_(Vs[:, :, k:].mean(0) + mu)


#: the fewest kept samples the size rule shrinks to
MIN_SAMPLES = 30
#: outer products summed per block (float64: 4 MB, near the fastest from 1/4 to 2 M at d = 11..51)
OUTER_CELLS = 1 << 19


def _sweep_bytes(d: int, s: Sizes) -> float:
    """A Gibbs sweep's temporaries: a precision and its Cholesky factor per row and one block of
    outer products (float64), the per-rating gathers (~24 d + 150 bytes a rating)."""
    return (2 * (s.users + s.items) * d * d + OUTER_CELLS) * 8 + s.n * (24 * d + 150)


def _sample_bytes(d: int, samples: int, s: Sizes) -> float:
    """The kept samples (float32), the concatenated tables and the copy made while storing them."""
    return 3 * (s.users + s.items) * d * samples * 4


def _with_ones(X: Tensor, k: int) -> Tensor:
    """[x_factors, 1]: the features the other side's bias column multiplies."""
    return torch.cat([X[:, :k], torch.ones(len(X), 1, dtype=X.dtype)], 1)


def _draw_rows(
    rows: Tensor,
    cols: Tensor,
    target: Tensor,
    feats: Tensor,
    X: Tensor,
    alpha: float,
    rng: np.random.Generator,
    gen: torch.Generator,
) -> Tensor:
    """One Gibbs draw of every row x_n of X given the other side's ``feats``.

    Conditional: precision P_n = L + alpha sum_j f_j f_j^T, mean P_n^-1 (L m + alpha sum_j f_j t_nj)
    over the ratings (n, j); (m, L) drawn first from their Normal-Wishart posterior given X.
    """
    n, d = X.shape
    m, L = _draw_hyper(X, rng)
    f = feats[cols]  # (R, d)
    P = _sum_outer(rows, f, n).view(n, d, d).mul_(alpha).add_(L)  # in place: (n, d, d) is large
    b = torch.zeros(n, d, dtype=X.dtype).index_add_(0, rows, f * target.unsqueeze(1)).mul_(alpha).add_(L @ m)
    chol = torch.linalg.cholesky(P)
    del P
    z = torch.randn(n, d, 1, generator=gen, dtype=X.dtype)
    # x = P^-1 b + chol^-T z (covariance P^-1) = chol^-T (chol^-1 b + z): two triangular solves.
    # torch's batched cholesky_solve took 10x as long as both (2.3 s a side on Epinions at d = 21).
    y = torch.linalg.solve_triangular(chol, b.unsqueeze(2), upper=False).add_(z)
    return torch.linalg.solve_triangular(chol.transpose(1, 2), y, upper=True).squeeze(2)


def _sum_outer(rows: Tensor, f: Tensor, n: int) -> Tensor:
    """(n, d * d): the sum of f_j f_j^T over each row's ratings, OUTER_CELLS numbers at a time.

    One buffer reused: the (R, d, d) outer products at once were a fresh ~280 MB each side of a
    sweep on ML-100k at d = 21 (page faults made this step 7x slower) and 2.9 GB on Epinions."""
    d = f.shape[1]
    step = max(1, OUTER_CELLS // (d * d))
    total = torch.zeros(n, d * d, dtype=f.dtype)
    buf = torch.empty(min(step, len(f)), d, d, dtype=f.dtype)
    for s in range(0, len(f), step):
        part = f[s : s + step]
        out = buf[: len(part)]
        torch.mul(part.unsqueeze(2), part.unsqueeze(1), out=out)
        total.index_add_(0, rows[s : s + step], out.view(len(part), d * d))
    return total


def _draw_hyper(X: Tensor, rng: np.random.Generator, beta0: float = 2.0) -> tuple[Tensor, Tensor]:
    """(m, L) from the Normal-Wishart posterior given rows X, prior mean 0, W0 = I, nu0 = d."""
    x = X.numpy()
    n, d = x.shape
    xbar = x.mean(0)
    scatter = (x - xbar).T @ (x - xbar)
    beta, nu = beta0 + n, d + n
    W = np.linalg.inv(np.eye(d) + scatter + (beta0 * n / beta) * np.outer(xbar, xbar))
    L = _wishart(nu, (W + W.T) / 2, rng)
    cov = np.linalg.inv(beta * L)
    m = rng.multivariate_normal(n * xbar / beta, (cov + cov.T) / 2)
    return torch.from_numpy(m), torch.from_numpy(L)


def _wishart(nu: float, W: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Wishart(nu, W) draw by the Bartlett decomposition: C A A^T C^T with W = C C^T."""
    d = len(W)
    A = np.tril(rng.standard_normal((d, d)), -1)
    A[np.diag_indices(d)] = np.sqrt(rng.chisquare(nu - np.arange(d)))
    CA = np.linalg.cholesky(W) @ A
    return CA @ CA.T
