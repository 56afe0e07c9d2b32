"""Fold-in maths for kinds whose score is a link of something linear in the user's representation.

Such a kind (FOLD_IN) scores f(z) with z = a_i . x + c_i: x is the user's representation,
(a_i, c_i) = ``model.user_linear(i)`` and (f, f') = ``model.link(z)``; sigmoid_range for dot-bias
(a_i = [item factors, 1], c_i = the item bias), the identity for ALS, the expected rating of the
cumulative link for the ordinal model. From a few answers (i, r_i) fold-in finds the MAP user
under a Gaussian prior fitted to the trained users:

    x* = argmin_x  sum_i (r_i - f(a_i . x + c_i))^2 + sum_k lam_k (x_k - m_k)^2

``method="gauss-newton"`` (the default) starts from the logit-space ridge solution below and takes
damped Gauss-Newton (Levenberg-Marquardt) steps on this objective, batched over users;
``method="logit-ridge"`` stops at the start: targets t_i = f^-1(r_i) (``model.link_inverse``),
then the weighted ridge regression min sum_i f'(t_i)^2 (t_i - z_i)^2 + penalty in closed form (the
objective linearised at the answers). On ML-100k Gauss-Newton is clearly better from 3 answers on
(``bench/coldstart.py``): linearised at the answers themselves, 1- and 5-star ratings sit where
the sigmoid is flat, so the most telling answers get the least weight; Gauss-Newton re-linearises
at the current estimate, and a few steps take about a millisecond.

The prior is measured on the trained model instead of guessed: its centre m is the average-taste
user (``average_taste``) and lam_k = noise_var / var_k, with var_k the spread of the trained
users' representations along dimension k. Training's decoupled AdamW weight decay has no exact L2
equivalent, so noise_var is matched to training empirically (``calibrate_noise``): the value under
which folding in known users from their own training ratings best reproduces what training
learned for them. With no answers fold-in returns m: the fallback.

The functions here take the model as the protocol (``user_linear``, ``link``, ``link_inverse``,
``user_repr``, ``score_all_items``); the kinds call them from their default methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab


class CollabModel(Protocol):
    """What fold-in reads of a kind (``models.base.CollabModel`` with FOLD_IN has all of it)."""

    users: Vocab
    items: Vocab
    meta: dict[str, Any]
    config: Any

    def user_repr(self, u: Tensor) -> Tensor: ...
    def user_reprs(self, u: Tensor) -> Tensor: ...
    def scorer(self, items: Tensor | None = None) -> Any: ...
    def score_all_items(self, u: Tensor) -> Tensor: ...
    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]: ...
    def link(self, z: Tensor) -> tuple[Tensor, Tensor]: ...
    def link_inverse(self, r: Tensor) -> tuple[Tensor, Tensor]: ...
    def link_is_identity(self) -> bool: ...

Method = Literal["gauss-newton", "logit-ridge"]
EPS = 1e-3  # logit targets are clipped to (EPS, 1 - EPS) of the output range
DEFAULT_NOISE = 1 / 80  # noise_var / (hi - lo)^2 without ratings to calibrate on (0.2 for 1-5 stars)
NOISE_GRID = (1 / 320, 1 / 160, 1 / 80, 1 / 53, 1 / 32, 1 / 16)  # candidates for calibrate_noise
CALIBRATE_CELLS = 1 << 24  # calibrate_noise caps answers per user so users x answers x D stays below
AVERAGE_CELLS = 1 << 26  # average_taste samples items past this many users x items
SAMPLE_CHUNK_CELLS = 1 << 20  # its sampled scores are computed this many at a time
CONVERGED = 1e-7  # Gauss-Newton stops for a user once no coordinate of their step exceeds this (relative)


@dataclass
class UserPrior:
    """Where fold-in starts and what it shrinks towards: x ~ N(mean, diag(noise_var / precision)).

    ``parts``: for a model made of components (an ensemble), each component's own prior, in the
    order of ``model.components()``; ``mean`` and ``precision`` are theirs side by side.
    """

    mean: Tensor  # (D,) representation of the average-taste user
    precision: Tensor  # (D,) lam_k = noise_var / var_k of the trained users
    average_user: Any = None  # raw id of the real user chosen as the average taste
    noise_var: float = 1.0  # the rating noise variance the precision was built with
    parts: tuple[UserPrior, ...] = field(default=())

    @classmethod
    def joined(cls, parts: list[UserPrior]) -> UserPrior:
        """The prior of a model whose user representation is its components' side by side."""
        return cls(
            torch.cat([p.mean for p in parts]), torch.cat([p.precision for p in parts]),
            parts[0].average_user, float("nan"), tuple(parts),
        )  # fmt: skip


@torch.no_grad()
def average_taste(model: CollabModel, counts: np.ndarray | None = None) -> int:
    """Index of the real user whose predicted ratings are closest (RMSE) to the population's average.

    The chapter's warning: the mean of all user embeddings can be a combination of tastes nobody
    has (fond of science fiction but not of action), and because the sigmoid bends, it does not
    even predict the average rating. So we average where it means something, in predicted ratings
    (m_i = mean over users of their predicted rating of item i), and pick the real user closest to
    m, among users with at least the median number of ratings when ``counts`` (ratings per user)
    is given, so the choice is a well-estimated person. Past AVERAGE_CELLS users x items (the
    Epinions model: 22 k x 296 k) both averages run over a seeded random sample of the items,
    AVERAGE_CELLS / users of them, so time and memory stay bounded.
    """
    n_users, n_items = len(model.users), len(model.items)
    if n_users * n_items <= AVERAGE_CELLS:
        chunks = torch.arange(n_users).split(4096)
        mean = sum(model.score_all_items(c).double().sum(0) for c in chunks) / n_users  # (N,)
        dist = torch.cat([(model.score_all_items(c).double() - mean).pow(2).mean(1) for c in chunks])
    else:
        sample = np.random.default_rng(0).choice(n_items, max(1, AVERAGE_CELLS // n_users), replace=False)
        items = torch.from_numpy(np.sort(sample))
        chunks = torch.arange(n_users).split(max(1, SAMPLE_CHUNK_CELLS // len(items)))
        scorer = model.scorer(items)

        def scores(users: Tensor) -> Tensor:  # (B, S) on the sampled items
            return scorer.finish(scorer.rank(model.user_reprs(users).float())).double()

        mean = sum(scores(c).sum(0) for c in chunks) / n_users
        dist = torch.cat([(scores(c) - mean).pow(2).mean(1) for c in chunks])
    if counts is not None:
        dist[torch.from_numpy(counts < np.median(counts))] = torch.inf
    return int(torch.argmin(dist))


@torch.no_grad()
def measure_prior(
    model: CollabModel, ratings: Ratings | None = None, noise_var: float | None = None
) -> UserPrior:
    """The Gaussian prior of fold-in, measured on the trained users (see the module docstring).

    ``noise_var`` scales the penalty (lam_k = noise_var / var_k). By default it is matched to
    training when ``ratings`` (the training ratings) are given (``calibrate_noise``); without
    them, DEFAULT_NOISE * (hi - lo)^2 of the rating scale (what calibration gives for the
    chapter's model on ML-100k). ``ratings`` also lets the average-taste choice skip thinly
    estimated users.
    """
    reps = model.user_repr(torch.arange(len(model.users))).double()  # (U, D)
    var = reps.var(0).clamp(min=1e-8) if reps.shape[1] else reps.new_zeros(0)  # (D,)
    counts = None
    if ratings is not None:
        counts = np.bincount(
            model.users.lookup(ratings.frame["user"], strict=False) + 1,
            minlength=len(model.users) + 1,
        )[1:]
    avg = average_taste(model, counts)
    prior = UserPrior(reps[avg].clone(), 1.0 / var, model.users.decode([avg])[0])
    if noise_var is None:
        noise_var = (
            calibrate_noise(model, ratings, prior)
            if ratings is not None
            else DEFAULT_NOISE * scale_width(model) ** 2
        )
    prior.precision, prior.noise_var = noise_var / var, float(noise_var)
    return prior


@torch.no_grad()
def calibrate_noise(
    model: CollabModel, ratings: Ratings, prior: UserPrior, n_users: int = 100, seed: int = 0
) -> float:
    """The noise_var under which fold-in best reproduces what training learned for known users.

    For ``n_users`` known users (a fixed random sample), fold in their training ratings with each
    candidate noise_var and measure sum_i (z_i(fold-in) - z_i(trained))^2 over the whole catalogue,
    i.e. (x - x_t)^T G (x - x_t) with G = A^T A; keep the candidate with the smallest mean.
    ``prior`` supplies the centre and 1 / var_k (its noise_var is ignored). For wide models
    (Bayesian MF: thousands of dimensions) each user contributes a random subset of at most
    CALIBRATE_CELLS / (n_users * D) ratings, which bounds memory and time.
    """
    frame = ratings.frame
    known = np.unique(model.users.lookup(frame["user"], strict=False))
    known = known[known >= 0]
    sample = np.sort(
        np.random.default_rng(seed).choice(known, min(n_users, len(known)), replace=False)
    )
    raw = model.users.decode(sample)
    rows = frame[frame["user"].isin(raw) & frame["item"].isin(model.items.ids)]
    width = model.user_repr(torch.zeros(1, dtype=torch.int64)).shape[1]
    cap = max(32, CALIBRATE_CELLS // (len(sample) * width))
    rows = rows.sample(frac=1.0, random_state=seed).groupby("user", sort=False).head(cap)
    codes = pd.Index(raw).get_indexer(rows["user"])
    items, values = padded(codes, model.items.lookup(rows["item"]), rows["rating"].to_numpy(), len(raw))
    target = model.user_repr(torch.from_numpy(sample)).double()
    A, _ = model.user_linear(torch.arange(len(model.items)))
    gram = A.T @ A / len(A)  # (D, D)
    scale = scale_width(model) ** 2
    best, best_err = NOISE_GRID[0], np.inf
    for frac in NOISE_GRID:
        candidate = UserPrior(prior.mean, frac * scale / prior.noise_var * prior.precision)
        diff = map_fold_in(model, items, values, candidate, steps=3) - target  # (n_users, D)
        err = float(((diff @ gram) * diff).sum(1).mean())
        if err < best_err:
            best, best_err = frac, err
    return best * scale


def padded(codes: np.ndarray, items: np.ndarray, values: np.ndarray, n_rows: int) -> tuple[Tensor, Tensor]:
    """(items (R, m) padded -1, values (R, m) float64) from long (row, item, value) triples; each
    row's answers sorted by item index."""
    order = np.lexsort((items, codes))
    codes, items, values = codes[order], items[order], np.asarray(values, np.float64)[order]
    counts = np.bincount(codes, minlength=n_rows)
    pos = np.arange(len(codes)) - np.repeat(np.cumsum(counts) - counts, counts)
    m = int(counts.max()) if len(counts) else 0
    I = torch.full((n_rows, m), -1, dtype=torch.int64)
    R = torch.zeros((n_rows, m), dtype=torch.float64)
    I[codes, pos] = torch.from_numpy(items.astype(np.int64))
    R[codes, pos] = torch.from_numpy(values)
    return I, R


def scale_width(model: CollabModel) -> float:
    """hi - lo of the rating scale (of the output range without one; 1 for neither)."""
    lo, hi = model.meta.get("scale") or model.config.y_range or (0.0, 1.0)
    return float(hi - lo)


def squash(z: Tensor, y: tuple[float, float] | None) -> tuple[Tensor, Tensor]:
    """(f(z), f'(z)) of sigmoid_range, or of the identity when there is no y_range."""
    if y is None:
        return z, torch.ones_like(z)
    s = torch.sigmoid(z)
    return y[0] + (y[1] - y[0]) * s, (y[1] - y[0]) * s * (1 - s)


def unsquash(r: Tensor, y: tuple[float, float] | None) -> tuple[Tensor, Tensor]:
    """(t, f'(t)): the logit whose sigmoid_range is r (clipped EPS inside the range, whose ends
    are never reached), and the slope there; the identity without a y_range."""
    if y is None:
        return r, torch.ones_like(r)
    p = ((r - y[0]) / (y[1] - y[0])).clamp(EPS, 1 - EPS)
    t = torch.log(p / (1 - p))
    return t, squash(t, y)[1]


@torch.no_grad()
def map_fold_in(
    model: CollabModel,
    items: Tensor,
    ratings: Tensor,
    prior: UserPrior,
    method: Method = "gauss-newton",
    steps: int = 5,
) -> Tensor:
    """(U, D) MAP user representations from answers: item indices (U, m), -1 = padding; ratings (U, m).

    A 1-D ``items``/``ratings`` pair is one user and gives a (D,) representation.
    """
    if method not in ("gauss-newton", "logit-ridge"):
        raise ValueError(f"method must be 'gauss-newton' or 'logit-ridge', not {method!r}")
    single = items.dim() == 1
    items, ratings = torch.atleast_2d(items), torch.atleast_2d(ratings).double()
    w = (items >= 0).double()  # (U, m) 1 for answers, 0 for padding
    A, c = model.user_linear(items)  # (U, m, D), (U, m)
    A = A * w.unsqueeze(-1)
    lam, mu = prior.precision, prior.mean.expand(len(items), -1)  # (D,), (U, D)
    # logit-space ridge: linearise f around each answer, solve the weighted ridge in closed form
    t, slope = model.link_inverse(ratings)
    x = _ridge(A, (t - c) * w, w * slope**2, lam, mu)
    if method == "logit-ridge" or model.link_is_identity():  # without a link the ridge is exact
        return x[0] if single else x
    damp = torch.full((len(items),), 1e-3, dtype=torch.float64)  # Levenberg-Marquardt damping
    f, df = model.link(_z(A, x, c))
    loss = _objective(f, ratings, w, x, lam, mu)
    active = torch.ones(len(items), dtype=torch.bool)
    for _ in range(steps):
        H = (A * (w * df**2).unsqueeze(-1)).mT @ A + torch.diag(lam)  # (U, D, D) J^T J + diag(lam)
        H = H + torch.diag_embed(damp.unsqueeze(1) * torch.diagonal(H, dim1=1, dim2=2))
        g = (A.mT @ (w * df * (ratings - f)).unsqueeze(-1)).squeeze(-1) - lam * (x - mu)  # (U, D)
        new = x + torch.linalg.solve(H, g)
        f_new, df_new = model.link(_z(A, new, c))
        new_loss = _objective(f_new, ratings, w, new, lam, mu)
        # (U,) accept the step, else damp harder and retry; a user whose step no longer moves
        # them is done, and stays as they are (so a user's answer does not depend on the batch)
        active &= ((new - x).abs() > CONVERGED * (1 + x.abs())).any(1)
        better = (new_loss < loss) & active
        x = torch.where(better.unsqueeze(1), new, x)
        f = torch.where(better.unsqueeze(1), f_new, f)
        df = torch.where(better.unsqueeze(1), df_new, df)
        loss = torch.where(better, new_loss, loss)
        damp = torch.where(better, damp * 0.1, damp * 10)
        if not bool(active.any()):
            break
    return x[0] if single else x


def _z(A: Tensor, x: Tensor, c: Tensor) -> Tensor:
    """(U, m) pre-activations a_i . x + c_i."""
    return (A @ x.unsqueeze(-1)).squeeze(-1) + c


def _objective(f: Tensor, r: Tensor, w: Tensor, x: Tensor, lam: Tensor, mu: Tensor) -> Tensor:
    """(U,) sum_i w_i (r_i - f_i)^2 + sum_k lam_k (x_k - mu_k)^2."""
    return (w * (r - f) ** 2).sum(1) + (lam * (x - mu) ** 2).sum(1)


def _ridge(A: Tensor, target: Tensor, weight: Tensor, lam: Tensor, mu: Tensor) -> Tensor:
    """argmin_x sum_i weight_i (target_i - A_i . x)^2 + sum_k lam_k (x_k - mu_k)^2, batched.

    Padding rows have A_i = 0 and weight 0. With fewer answers m than dimensions D (new users of
    wide models) it solves the m x m dual instead (Woodbury):
    x = mu + L^-1 A^T (A L^-1 A^T + W^-1)^-1 (target - A mu).
    """
    m, D = A.shape[-2], A.shape[-1]
    if m >= D:
        H = (A * weight.unsqueeze(-1)).mT @ A + torch.diag(lam)  # (U, D, D)
        g = (A.mT @ (weight * target).unsqueeze(-1)).squeeze(-1) + lam * mu  # (U, D)
        return torch.linalg.solve(H, g)
    AL = A / lam  # (U, m, D)
    live = weight > 0
    inv_w = torch.where(live, 1 / torch.where(live, weight, 1.0), 1.0)  # padding: any finite value
    K = AL @ A.mT + torch.diag_embed(inv_w)  # (U, m, m)
    resid = torch.where(live, target - (A @ mu.unsqueeze(-1)).squeeze(-1), 0.0)
    alpha = torch.linalg.solve(K, resid.unsqueeze(-1))  # (U, m, 1)
    return mu + (AL.mT @ alpha).squeeze(-1)
