"""Fold-in maths for kinds whose score is a link of something linear in one side's representation.

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

The same maths places a new **item** with the users fixed (``side="item"``, ITEM_FOLD_IN): its
score from user u is f(b_u . y + d_u) with (b_u, d_u) = ``model.item_linear(u)``, and y is the
MAP item under a prior measured on the trained items the same way (centre: the average-taste
item, the real item whose predicted ratings by every user are closest to the average item's;
lam_k = noise_var / var_k over the trained items; noise_var calibrated by folding in known items
from their own training ratings). Everything below takes ``side`` and reads the other side as the
fixed one (``Side``).

The functions here take the model as the protocol (``user_linear``/``item_linear``, ``link``,
``link_inverse``, ``user_repr``/``item_repr``, ``scorer``); the kinds call them from their
default methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

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
    def item_repr(self, i: Tensor) -> Tensor: ...
    def user_reprs(self, u: Tensor) -> Tensor: ...
    def scorer(self, items: Tensor | None = None) -> Any: ...
    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]: ...
    def item_linear(self, users: Tensor) -> tuple[Tensor, Tensor]: ...
    def link(self, z: Array) -> tuple[Array, Array]: ...
    def link_inverse(self, r: Tensor) -> tuple[Tensor, Tensor]: ...
    def link_is_identity(self) -> bool: ...

Method = Literal["gauss-newton", "logit-ridge"]
Array = TypeVar("Array", Tensor, np.ndarray)  # the link takes and gives either kind
SideName = Literal["user", "item"]
EPS = 1e-3  # logit targets are clipped to (EPS, 1 - EPS) of the output range
DEFAULT_NOISE = 1 / 80  # noise_var / (hi - lo)^2 without ratings to calibrate on (0.2 for 1-5 stars)
NOISE_GRID = (1 / 320, 1 / 160, 1 / 80, 1 / 53, 1 / 32, 1 / 16)  # candidates for calibrate_noise
CALIBRATE_CELLS = 1 << 24  # calibrate_noise caps answers per user so users x answers x D stays below
AVERAGE_CELLS = 1 << 26  # average_taste samples the other side past this many users x items
SAMPLE_CHUNK_CELLS = 1 << 20  # its sampled scores are computed this many at a time
SPREAD_ROWS = 1 << 14  # spread_prior's moments are measured on at most this many rows
CONVERGED = 1e-7  # Gauss-Newton stops for a user once no coordinate of their step exceeds this (relative)


@dataclass(frozen=True)
class Side:
    """The side whose representation fold-in solves (``name``), the other one held fixed."""

    name: SideName

    @property
    def other(self) -> SideName:
        return "item" if self.name == "user" else "user"

    def vocab(self, model: CollabModel) -> Vocab:
        return model.users if self.name == "user" else model.items

    def other_vocab(self, model: CollabModel) -> Vocab:
        return model.items if self.name == "user" else model.users

    def reprs(self, model: CollabModel, idx: Tensor) -> Tensor:
        """(n,) indices of this side -> (n, D) their trained representations."""
        return (model.user_repr if self.name == "user" else model.item_repr)(idx)

    def linear(self, model: CollabModel, others: Tensor) -> tuple[Tensor, Tensor]:
        """(A, c) with z = A . x + c for a representation x of this side, the other side's
        ``others`` (indices, any shape) fixed."""
        return (model.user_linear if self.name == "user" else model.item_linear)(others)


def side_of(name: str) -> Side:
    if name not in ("user", "item"):
        raise ValueError(f"side must be 'user' or 'item', not {name!r}")
    return Side(name)  # type: ignore[arg-type]


@dataclass
class UserPrior:
    """Where fold-in starts and what it shrinks towards: x ~ N(mean, diag(noise_var / precision)).
    An item's prior (ITEM_FOLD_IN) is one too, measured on the trained items.

    ``parts``: for a model made of components (an ensemble), each component's own prior, in the
    order of ``model.components()``; ``mean`` and ``precision`` are theirs side by side.
    """

    mean: Tensor  # (D,) representation of the average-taste user
    precision: Tensor  # (D,) lam_k = noise_var / var_k of the trained users
    average_user: Any = None  # raw id of the real user (or item) chosen as the average taste
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
def average_taste(model: CollabModel, counts: np.ndarray | None = None, side: SideName = "user") -> int:
    """Index of the real user whose predicted ratings are closest (RMSE) to the population's average.

    The chapter's warning: the mean of all user embeddings can be a combination of tastes nobody
    has (fond of science fiction but not of action), and because the sigmoid bends, it does not
    even predict the average rating. So we average where it means something, in predicted ratings
    (m_i = mean over users of their predicted rating of item i), and pick the real user closest to
    m, among users with at least the median number of ratings when ``counts`` (ratings per user)
    is given, so the choice is a well-estimated person.

    ``side="item"`` is the mirror: the real item whose predicted ratings by every user are closest
    to the average item's (m_u = mean over items of user u's predicted ratings), among items with
    at least the median number of ratings.

    Past AVERAGE_CELLS users x items (the Epinions model: 22 k x 296 k) the average runs over a
    seeded random sample of the other side (items for the average user, users for the average
    item), AVERAGE_CELLS / candidates of them, scored by the kind's scorer prepared for them
    once, so time and memory stay bounded and every candidate is scored.
    """
    n_users, n_items = len(model.users), len(model.items)
    users, items = torch.arange(n_users), None
    if n_users * n_items > AVERAGE_CELLS:  # sample the side averaged over: every candidate is scored
        if side == "user":
            items = torch.from_numpy(np.sort(np.random.default_rng(0).choice(n_items, max(1, AVERAGE_CELLS // n_users), replace=False)))
        else:
            users = torch.from_numpy(np.sort(np.random.default_rng(0).choice(n_users, max(1, AVERAGE_CELLS // n_items), replace=False)))
    scorer = model.scorer(items)
    width = n_items if items is None else len(items)
    chunks = users.split(max(1, min(4096, SAMPLE_CHUNK_CELLS // max(1, width))))

    def blocks() -> Iterator[Tensor]:  # (B, N or sampled items) predicted ratings of a chunk of users
        return (scorer.finish(scorer.rank(model.user_reprs(c).float())).double() for c in chunks)

    if side == "item":  # (N,) mean over users of (s_ui - m_u)^2
        dist = sum((b - b.mean(1, keepdim=True)).pow(2).sum(0) for b in blocks()) / len(users)
    else:  # (U,) mean over items of (s_ui - m_i)^2, for the users scored
        mean = sum(b.sum(0) for b in blocks()) / len(users)  # (N,)
        dist = torch.full((n_users,), torch.inf, dtype=torch.float64)
        dist[users] = torch.cat([(b - mean).pow(2).mean(1) for b in blocks()])
    if counts is not None:
        thin = torch.from_numpy(counts < np.median(counts))
        if not torch.isinf(dist.masked_fill(thin, torch.inf)).all():
            dist[thin] = torch.inf
    return int(torch.argmin(dist))


@torch.no_grad()
def measure_prior(
    model: CollabModel, ratings: Ratings | None = None, noise_var: float | None = None,
    side: SideName = "user",
) -> UserPrior:
    """The Gaussian prior of fold-in, measured on the trained users (or items: ``side``; see the
    module docstring).

    ``noise_var`` scales the penalty (lam_k = noise_var / var_k). By default it is matched to
    training when ``ratings`` (the training ratings) are given (``calibrate_noise``); without
    them, DEFAULT_NOISE * (hi - lo)^2 of the rating scale (what calibration gives for the
    chapter's model on ML-100k). ``ratings`` also lets the average-taste choice skip thinly
    estimated users (items).
    """
    view = side_of(side)
    vocab = view.vocab(model)
    reps = view.reprs(model, torch.arange(len(vocab))).double()  # (U, D)
    var = reps.var(0).clamp(min=1e-8) if reps.shape[1] else reps.new_zeros(0)  # (D,)
    counts = None
    if ratings is not None:
        counts = np.bincount(
            vocab.lookup(ratings.frame[view.name], strict=False) + 1, minlength=len(vocab) + 1
        )[1:]
    avg = average_taste(model, counts, view.name)
    prior = UserPrior(reps[avg].clone(), 1.0 / var, vocab.decode([avg])[0])
    if noise_var is None:
        noise_var = (
            calibrate_noise(model, ratings, prior, side=view.name)
            if ratings is not None
            else DEFAULT_NOISE * scale_width(model) ** 2
        )
    prior.precision, prior.noise_var = noise_var / var, float(noise_var)
    return prior


@torch.no_grad()
def spread_prior(model: CollabModel, side: SideName = "user") -> UserPrior:
    """A prior measured in O(n D), with no scoring: centred on the mean representation of the
    trained users (items), lam_k = noise_var / var_k, noise_var the uncalibrated default (both
    moments over a seeded sample of SPREAD_ROWS rows when there are more). For
    placing rows that training moves next (``models.incremental.update``): the average-taste
    search and the calibration of ``measure_prior`` score the whole catalogue several times,
    which on a large one costs more than the training that follows."""
    view = side_of(side)
    n = len(view.vocab(model))
    rows = torch.arange(n) if n <= SPREAD_ROWS else torch.from_numpy(np.sort(np.random.default_rng(0).choice(n, SPREAD_ROWS, replace=False)))
    reps = view.reprs(model, rows)  # (n, D), as stored
    var, mean = torch.var_mean(reps, 0) if len(reps) > 1 else (torch.ones(reps.shape[1]), reps.sum(0))
    noise_var = DEFAULT_NOISE * scale_width(model) ** 2
    return UserPrior(mean.double(), noise_var / var.double().clamp(min=1e-8), None, noise_var)


@torch.no_grad()
def calibrate_noise(
    model: CollabModel, ratings: Ratings, prior: UserPrior, n_users: int = 100, seed: int = 0,
    side: SideName = "user",
) -> float:
    """The noise_var under which fold-in best reproduces what training learned for known users
    (or items, ``side="item"``: then ``n_users`` is the number of items sampled and the
    catalogue is every user).

    For ``n_users`` known users (a fixed random sample), fold in their training ratings with each
    candidate noise_var and measure sum_i (z_i(fold-in) - z_i(trained))^2 over the whole catalogue,
    i.e. (x - x_t)^T G (x - x_t) with G = A^T A; keep the candidate with the smallest mean.
    ``prior`` supplies the centre and 1 / var_k (its noise_var is ignored). For wide models
    (Bayesian MF: thousands of dimensions) each user contributes a random subset of at most
    CALIBRATE_CELLS / (n_users * D) ratings, which bounds memory and time. Ratings of no known
    user (item) give the uncalibrated default of ``measure_prior``.
    """
    view = side_of(side)
    own, other = view.vocab(model), view.other_vocab(model)
    frame = ratings.frame
    known = np.unique(own.lookup(frame[view.name], strict=False))
    known = known[known >= 0]
    if not len(known):  # nothing trained to match: the uncalibrated default
        return DEFAULT_NOISE * scale_width(model) ** 2
    sample = np.sort(
        np.random.default_rng(seed).choice(known, min(n_users, len(known)), replace=False)
    )
    raw = own.decode(sample)
    rows = frame[frame[view.name].isin(raw) & frame[view.other].isin(other.ids)]
    width = view.reprs(model, torch.zeros(1, dtype=torch.int64)).shape[1]
    cap = max(32, CALIBRATE_CELLS // (len(sample) * width))
    rows = rows.sample(frac=1.0, random_state=seed).groupby(view.name, sort=False).head(cap)
    codes = pd.Index(raw).get_indexer(rows[view.name])
    items, values = padded(codes, other.lookup(rows[view.other]), rows["rating"].to_numpy(), len(raw))
    target = view.reprs(model, torch.from_numpy(sample)).double()
    A, _ = view.linear(model, torch.arange(len(other)))
    gram = A.T @ A / len(A)  # (D, D)
    scale = scale_width(model) ** 2
    best, best_err = NOISE_GRID[0], np.inf
    for frac in NOISE_GRID:
        candidate = UserPrior(prior.mean, frac * scale / prior.noise_var * prior.precision)
        diff = map_fold_in(model, items, values, candidate, steps=3, side=view.name) - target  # (n, D)
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


def squash(z: Array, y: tuple[float, float] | None) -> tuple[Array, Array]:
    """(f(z), f'(z)) of sigmoid_range, or of the identity when there is no y_range. ``z`` is a
    tensor or a numpy array (served fold-in's steps, where torch's per-call overhead is most of
    the cost), and so are f and f'."""
    if isinstance(z, np.ndarray):
        s, ones = 0.5 + 0.5 * np.tanh(0.5 * z), np.ones_like(z)  # the logistic, never overflowing
    else:
        s, ones = torch.sigmoid(z), torch.ones_like(z)
    if y is None:
        return z, ones
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
    side: SideName = "user",
) -> Tensor:
    """(U, D) MAP user representations from answers: item indices (U, m), -1 = padding; ratings (U, m).

    A 1-D ``items``/``ratings`` pair is one user and gives a (D,) representation. With
    ``side="item"`` the rows are new items and ``items`` holds the indices of the users who rated
    them (the users fixed): the same solve through ``model.item_linear``. The solve runs in numpy
    float64 and its steps are compiled: a served fold-in is one user of a few dozen answers, where
    torch's per-call overhead would cost more than the arithmetic.
    """
    if method not in ("gauss-newton", "logit-ridge"):
        raise ValueError(f"method must be 'gauss-newton' or 'logit-ridge', not {method!r}")
    single = items.dim() == 1
    items, ratings = torch.atleast_2d(items), torch.atleast_2d(ratings).double()
    A_t, c_t = side_of(side).linear(model, items)  # (U, m, D), (U, m)
    w = (items >= 0).numpy().astype(np.float64)  # (U, m) 1 for answers, 0 for padding
    A, c, r = A_t.numpy() * w[..., None], c_t.numpy(), ratings.numpy()
    lam, mu = prior.precision.double().numpy(), prior.mean.double().reshape(-1).numpy()  # (D,), (D,)
    # logit-space ridge: linearise f around each answer, solve the weighted ridge in closed form
    t, slope = (v.numpy() for v in model.link_inverse(ratings))
    x = _ridge(A, (t - c) * w, w * slope**2, lam, mu)
    if not (method == "logit-ridge" or model.link_is_identity()):  # without a link the ridge is exact
        x = _gauss_newton(model, A, c, r, w, x, lam, mu, steps)
    out = torch.from_numpy(np.ascontiguousarray(x))
    return out[0] if single else out


def _gauss_newton(model: CollabModel, A: np.ndarray, c: np.ndarray, r: np.ndarray, w: np.ndarray,
                  x: np.ndarray, lam: np.ndarray, mu: np.ndarray, steps: int) -> np.ndarray:  # fmt: skip
    """Damped Gauss-Newton (Levenberg-Marquardt) steps from ``x`` on the MAP objective, per user:
    a user whose step no longer moves them is done and stays as they are (so a user's answer does
    not depend on the batch). The steps are ``core.kernels``' compiled ones, the link the kind's."""
    from collabkit.core import kernels  # numba, imported by the first fold-in, not by every command

    def link(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, df = model.link((A @ x[..., None])[..., 0] + c)  # numpy in, numpy out
        return np.ascontiguousarray(f, np.float64), np.ascontiguousarray(df, np.float64)

    A, r, w, x = (np.ascontiguousarray(v) for v in (A, r, w, x))
    f, df = link(x)
    loss = (w * (r - f) ** 2).sum(1) + (lam * (x - mu) ** 2).sum(1)  # (U,) the MAP objective
    damp, active, new = np.full(len(A), 1e-3), np.ones(len(A), dtype=bool), np.empty_like(x)
    for _ in range(steps):
        kernels.lm_step(A, w, r, f, df, x, lam, mu, damp, active, new)
        f_new, df_new = link(new)
        if not kernels.lm_accept(w, r, x, f, df, loss, new, f_new, df_new, lam, mu, damp, active, CONVERGED):
            break
    return x


def _ridge(A: np.ndarray, target: np.ndarray, weight: np.ndarray, lam: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """argmin_x sum_i weight_i (target_i - A_i . x)^2 + sum_k lam_k (x_k - mu_k)^2, batched.

    Padding rows have A_i = 0 and weight 0. With fewer answers m than dimensions D (new users of
    wide models) it solves the m x m dual instead (Woodbury):
    x = mu + L^-1 A^T (A L^-1 A^T + W^-1)^-1 (target - A mu).
    """
    m, D = A.shape[-2], A.shape[-1]
    if m >= D:
        H = np.swapaxes(A * weight[..., None], 1, 2) @ A + np.diag(lam)  # (U, D, D)
        g = np.einsum("umd,um->ud", A, weight * target) + lam * mu  # (U, D)
        return np.linalg.solve(H, g[..., None])[..., 0]
    AL = A / lam  # (U, m, D)
    live = weight > 0
    inv_w = np.where(live, 1 / np.where(live, weight, 1.0), 1.0)  # padding: any finite value
    K = AL @ np.swapaxes(A, 1, 2)  # (U, m, m)
    K[:, np.arange(m), np.arange(m)] += inv_w
    resid = np.where(live, target - (A @ mu[..., None])[..., 0], 0.0)  # mu: (D,) or (U, D)
    alpha = np.linalg.solve(K, resid[..., None])  # (U, m, 1)
    return mu + (np.swapaxes(AL, 1, 2) @ alpha)[..., 0]  # (U, D)
