r"""How sure is a number? A seeded bootstrap over users for every metric, and a paired test.

The users of a test set are a sample; another sample would give other numbers. Every metric here
is a ratio of per-user sums (``PerUser``): with num_u and den_u user u's parts,

    value = f( sum_u num_u / sum_u den_u )            f = sqrt for rmse, the identity otherwise

so a mean over users (ndcg@k: num_u = ndcg of u, den_u = 1) and a mean over ratings (rmse:
num_u = u's sum of squared errors, den_u = u's number of ratings) are one computation. A user a
metric does not score (no relevant held-out item) has num_u = den_u = 0. A cross-validation
stacks its G folds as rows, num and den (G, U), and its value is the mean of the G fold values.

Interval (percentile bootstrap, Efron & Tibshirani 1993, ch. 13). Draw B resamples of the U users
with replacement (``rng.integers(0, U, (B, U))`` from ``numpy.random.default_rng(seed)``: the same
draws as ``scipy.stats.bootstrap`` with that generator), recompute the value on each (a user drawn
twice counts twice, in every fold at once), and report the alpha/2 and 1 - alpha/2 quantiles
(linear interpolation) of the B values, alpha = 1 - level.

Paired test. Two models scored on the same users: the same resamples give B differences
d_b = value_b(A) - value_b(B). The interval of the difference is their quantiles as above, and the
two-sided p-value is the smallest alpha at which that interval excludes 0,

    p = min(1, 2 (min(#{d_b <= 0}, #{d_b >= 0}) + 1) / (B + 1))

(+1: the observed sample counts as one of the resamples, so p is never 0). A difference is
significant at ``level`` when p < 1 - level: then its interval excludes 0 (the two can disagree
only within a resample or two of the edge). No correction
for testing several metrics or models at once is made: with 20 tests at 95%, one "significant"
difference is expected by chance.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95
#: fewer scored users than this get no interval: a bootstrap of a handful says nothing reliable
MIN_USERS = 10
#: weights of this many (resample, user) cells are built at a time
CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class PerUser:
    """One metric as per-user parts: value = mean over rows g of f(sum_u num[g, u] / sum_u den[g, u]).

    ``num`` and ``den`` are (U,) for one test set or (G, U) for G folds; f = sqrt when ``root``.
    """

    num: np.ndarray
    den: np.ndarray
    root: bool = False

    def __post_init__(self) -> None:
        num, den = np.atleast_2d(self.num).astype(np.float64), np.atleast_2d(self.den).astype(np.float64)
        if num.shape != den.shape or num.ndim != 2:
            raise ValueError(f"num {num.shape} and den {den.shape} must have one shape (G, U)")
        object.__setattr__(self, "num", num)
        object.__setattr__(self, "den", den)

    @property
    def n_users(self) -> int:
        """Users scored in at least one row (den > 0)."""
        return int((self.den > 0).any(axis=0).sum())

    def value(self) -> float:
        """The metric on the sample itself (every user once)."""
        return float(self.on(np.ones((1, self.num.shape[1])))[0])

    def on(self, weights: np.ndarray) -> np.ndarray:
        """(B,) the metric on B weighted copies of the users, ``weights`` (B, U); NaN where a row
        scores nobody."""
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = (self.num @ weights.T) / (self.den @ weights.T)  # (G, B)
        if self.root:
            ratio = np.sqrt(ratio)
        return ratio.mean(axis=0)

    def where(self, users: np.ndarray) -> PerUser:
        """The metric restricted to the users where the (U,) mask is True (the others count 0)."""
        keep = np.asarray(users, dtype=bool)
        return PerUser(self.num * keep, self.den * keep, self.root)


@dataclass(frozen=True)
class Difference:
    """A paired comparison of one metric: A - B, its interval and two-sided p-value."""

    diff: float
    low: float
    high: float
    p: float
    level: float = LEVEL

    @property
    def significant(self) -> bool:
        return bool(self.p < 1 - self.level)

    def to_json(self) -> dict[str, float | bool]:
        return {"diff": self.diff, "low": self.low, "high": self.high, "p": self.p, "significant": self.significant}


def resample_weights(n_users: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Iterator[np.ndarray]:
    """Chunks (b, U) of how often each user is drawn in each resample (rows sum to U).

    The draws are ``default_rng(seed).integers(0, U, (n_resamples, U))`` taken a chunk at a time
    (the same stream as one call), counted per user.
    """
    if n_users < 1:
        raise ValueError("a bootstrap needs at least one user")
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // n_users)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        draws = rng.integers(0, n_users, (b, n_users))
        flat = (draws + n_users * np.arange(b)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_users).reshape(b, n_users).astype(np.float64)


def bootstrap_distribution(
    metrics: Mapping[Hashable, PerUser], n_resamples: int = N_RESAMPLES, seed: int = 0
) -> dict[Hashable, np.ndarray]:
    """metric -> (B,) its value on each of the same B resamples of the users (all metrics share U).

    Every metric's parts are stacked into one matrix, so each chunk of resample weights is read
    once: (parts, U) @ (U, b).
    """
    n_users = _n_users(metrics)
    names = list(metrics)
    parts = np.concatenate([np.concatenate([m.num, m.den]) for m in metrics.values()])  # (R, U)
    rows = np.cumsum([0] + [2 * len(metrics[n].num) for n in names])
    out: dict[Hashable, list[np.ndarray]] = {name: [] for name in names}
    for weights in resample_weights(n_users, n_resamples, seed):
        sums = parts @ weights.T  # (R, b)
        for n, name in enumerate(names):
            g = len(metrics[name].num)
            num, den = sums[rows[n] : rows[n] + g], sums[rows[n] + g : rows[n + 1]]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = num / den
            out[name].append((np.sqrt(ratio) if metrics[name].root else ratio).mean(axis=0))
    return {name: np.concatenate(v) for name, v in out.items()}


def intervals(
    metrics: Mapping[str, PerUser], n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """metric -> (low, high): the percentile bootstrap interval at ``level`` (module docstring);
    (NaN, NaN) for a metric that scores fewer than ``MIN_USERS`` users."""
    values = bootstrap_distribution(metrics, n_resamples, seed)
    return {name: interval(values[name], metrics[name], level) for name in metrics}


def interval(values: np.ndarray, metric: PerUser, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of a metric's bootstrap ``values`` (NaN with too few users)."""
    if metric.n_users < MIN_USERS:
        return float("nan"), float("nan")
    return _quantiles(values, level)


def summary(
    metrics: Mapping[str, PerUser], n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """(metric -> value, metric -> its interval); no intervals when ``n_resamples`` is 0."""
    values = {name: m.value() for name, m in metrics.items()}
    return values, intervals(metrics, n_resamples, level, seed) if n_resamples else {}


def paired(
    a: Mapping[str, PerUser],
    b: Mapping[str, PerUser],
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, Difference]:
    """metric -> the paired bootstrap of A - B, for the metrics both have, over the same users."""
    names = [name for name in a if name in b]
    both = {**{("a", n): a[n] for n in names}, **{("b", n): b[n] for n in names}}
    if len({m.num.shape[1] for m in both.values()}) > 1:
        raise ValueError("a paired test needs both models scored on the same users")
    values = bootstrap_distribution(both, n_resamples, seed)
    return {
        n: difference(values[("a", n)], values[("b", n)], a[n].value() - b[n].value(), level)
        for n in names
    }


def difference(a: np.ndarray, b: np.ndarray, observed: float, level: float = LEVEL) -> Difference:
    """The paired test from two metrics' values on the same resamples (module docstring)."""
    d = a - b
    d = d[~np.isnan(d)]
    low, high = _quantiles(d, level)
    below, above = int((d <= 0).sum()), int((d >= 0).sum())
    p = min(1.0, 2 * (min(below, above) + 1) / (len(d) + 1)) if len(d) else float("nan")
    return Difference(observed, low, high, p, level)


def _quantiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """(alpha/2, 1 - alpha/2) quantiles, resamples where the metric is undefined (NaN) left out."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    v = values[~np.isnan(values)]
    if not v.size:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(v, [alpha, 1 - alpha])
    return float(low), float(high)


def _n_users(metrics: Mapping[Hashable, PerUser]) -> int:
    sizes = {m.num.shape[1] for m in metrics.values()}
    if len(sizes) != 1:
        raise ValueError(f"every metric must be over the same users, got sizes {sorted(sizes)}")
    return sizes.pop()
