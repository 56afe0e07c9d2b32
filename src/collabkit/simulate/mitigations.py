"""Mitigations of the feedback loop, each one switch of ``Mitigation`` so runs can be compared.

Two act on the training data (the trainer takes no per-row weights, so weights are applied by
resampling the log): ``cap`` (no user counts for more than ``cap`` ratings per retraining) and
``ipw`` (inverse-propensity weighting from the logged exposures). Three act on the list:
``calibrate`` (Steck 2018: keep each list's genre mix close to the user's own), ``popularity``
(a penalty on how often the log holds an item) and ``explore`` (a few slots for the items the
log knows least about).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Mitigation:
    """Which mitigations are on; the default is none."""

    cap: int | None = None  # at most this many ratings per user in each retraining
    ipw: bool = False  # resample the log with weights 1 / P(item exposed)
    ipw_clip: float = 10.0  # largest weight, as a multiple of the mean
    calibrate: float = 0.0  # Steck's lambda in [0, 1]: 0 = off
    popularity: float = 0.0  # weight in [0, 1] of the log-popularity penalty: 0 = off
    explore: int = 0  # slots (at the end of the list) for the least-rated candidates

    @property
    def name(self) -> str:
        parts = []
        if self.cap is not None:
            parts.append(f"cap={self.cap}")
        if self.ipw:
            parts.append("ipw")
        if self.calibrate:
            parts.append(f"calibrate={self.calibrate:g}")
        if self.popularity:
            parts.append(f"popularity={self.popularity:g}")
        if self.explore:
            parts.append(f"explore={self.explore}")
        return "+".join(parts) or "none"


PRESETS = {
    "none": Mitigation(),
    "cap": Mitigation(cap=40),
    "ipw": Mitigation(ipw=True),
    "calibrate": Mitigation(calibrate=0.5),
    "popularity": Mitigation(popularity=0.5),
    "explore": Mitigation(explore=2),
}


def parse_mitigation(text: str) -> Mitigation:
    """'none', a preset name, or 'cap=40,calibrate=0.5,explore=2,ipw' -> Mitigation."""
    text = text.strip()
    if text in PRESETS:
        return PRESETS[text]
    kw: dict = {}
    for part in filter(None, (p.strip() for p in text.replace("+", ",").split(","))):
        key, _, value = part.partition("=")
        try:
            if key == "ipw":
                kw["ipw"] = True
            elif key in ("cap", "explore"):
                kw[key] = int(value) if value else int(getattr(PRESETS[key], key))
            elif key in ("calibrate", "popularity"):
                kw[key] = float(value) if value else float(getattr(PRESETS[key], key))
            else:
                raise ValueError(f"unknown mitigation {key!r}")
        except ValueError as e:
            raise ValueError(
                f"bad mitigation {text!r}: {e}; write one of {', '.join(PRESETS)} or e.g. cap=40,calibrate=0.5"
            ) from None
    return Mitigation(**kw)


def cap_per_user(log: pd.DataFrame, cap: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``cap`` rows per user, the kept ones drawn uniformly (a fresh draw each call)."""
    key = rng.random(len(log))
    rank = pd.Series(key).groupby(log["user"].to_numpy()).rank(method="first").to_numpy()
    return log[rank <= cap]


def ipw_resample(
    log: pd.DataFrame,
    exposures: pd.DataFrame,
    n_items: int,
    rng: np.random.Generator,
    clip: float = 10.0,
) -> pd.DataFrame:
    """The log resampled (with replacement, same size) with weights 1 / P(item exposed).

    P(item) = (exposures of the item + 1) / (exposures + n_items), from the logged lists; weights
    are normalised to mean 1 and clipped at ``clip``, the usual variance control.
    """
    counts = np.bincount(exposures["item"].to_numpy(dtype=np.int64), minlength=n_items)
    p = (counts + 1.0) / (counts.sum() + n_items)
    w = 1.0 / p[log["item"].to_numpy(dtype=np.int64)]
    w = np.minimum(w / w.mean(), clip)
    rows = rng.choice(len(log), size=len(log), p=w / w.sum())
    return log.iloc[np.sort(rows)]


def training_frame(
    log: pd.DataFrame,
    exposures: pd.DataFrame,
    n_items: int,
    mitigation: Mitigation,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The rows the system is retrained on this round: the whole log unless a mitigation says otherwise."""
    rows = log
    if mitigation.cap is not None:
        rows = cap_per_user(rows, mitigation.cap, rng)
    if mitigation.ipw and len(exposures):
        rows = ipw_resample(rows, exposures, n_items, rng, mitigation.ipw_clip)
    return rows


def calibrate(
    items: np.ndarray,
    scores: np.ndarray,
    taste: np.ndarray,
    genres: np.ndarray,
    n: int,
    lam: float,
    alpha: float = 0.01,
) -> np.ndarray:
    """Steck's calibrated re-ranking of candidate lists; (U, C) items -> (U, n) items.

    Greedily adds the candidate maximising (1 - lam) * sum of min-max-normalised scores - lam *
    KL(p || q~), p = the user's genre distribution ``taste`` (U, G), q~ = (1 - alpha) q + alpha p,
    q = the mean genre distribution (``genres``, (I, G)) of the list so far. Item -1 = empty.
    """
    n_users, n_cand = items.shape
    valid = items >= 0
    s = np.where(valid, scores, np.nan)
    lo, hi = np.nanmin(s, 1, keepdims=True), np.nanmax(s, 1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(hi > lo, (s - lo) / (hi - lo), 1.0)
    s = np.where(valid, s, -np.inf)
    g = genres[np.maximum(items, 0)]  # (U, C, G)
    p = taste[:, None, :]  # (U, 1, G)
    chosen = np.zeros((n_users, n_cand), dtype=bool)
    mix = np.zeros((n_users, genres.shape[1]))  # (U, G) sum of the chosen items' genres
    util = np.zeros(n_users)
    out = np.full((n_users, n), -1, dtype=np.int64)
    rows = np.arange(n_users)
    for t in range(min(n, n_cand)):
        q = (mix[:, None, :] + g) / (t + 1)  # (U, C, G) the list's mix with each candidate
        q = (1 - alpha) * q + alpha * p
        with np.errstate(invalid="ignore", divide="ignore"):
            kl = np.where(p > 0, p * np.log(p / q), 0.0).sum(-1)  # (U, C)
        obj = (1 - lam) * (util[:, None] + s) - lam * kl
        obj = np.where(chosen | ~valid, -np.inf, obj)
        best = np.argmax(obj, 1)
        ok = np.isfinite(obj[rows, best])
        out[ok, t] = items[rows[ok], best[ok]]
        chosen[rows[ok], best[ok]] = True
        mix[ok] += g[rows[ok], best[ok]]
        util[ok] += s[rows[ok], best[ok]]
    return out


def penalise_popularity(
    items: np.ndarray, scores: np.ndarray, counts: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """(U, C) candidates re-ranked by the new score (1 - lam) s - lam * log(1 + c_i) / log(1 + max c).

    s = each user's scores min-max normalised to [0, 1], c (I,) ratings per item in the log: the
    more the log already holds an item, the lower it goes. Returns (items, new scores), best
    first; empty slots (-1) stay last with score -inf.
    """
    valid = items >= 0
    s = np.where(valid, scores, np.nan)
    lo, hi = np.nanmin(s, 1, keepdims=True), np.nanmax(s, 1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(hi > lo, (s - lo) / (hi - lo), 1.0)
    pop = np.log1p(counts[np.maximum(items, 0)]) / max(np.log1p(counts.max()), 1e-12)
    obj = np.where(valid, (1 - lam) * s - lam * pop, -np.inf)
    order = np.argsort(-obj, axis=1, kind="stable")
    return np.take_along_axis(items, order, 1), np.take_along_axis(obj, order, 1)


def explore(items: np.ndarray, n: int, k: int, counts: np.ndarray) -> np.ndarray:
    """(U, C) candidates best first -> (U, n): the top n - k, then the k least-rated of the rest.

    ``counts`` (I,) ratings per item in the log: the fewer, the less the model knows about it
    (its score is the least certain). Ties keep the candidates' order.
    """
    head, rest = items[:, : n - k], items[:, n - k :]
    c = np.where(rest >= 0, counts[np.maximum(rest, 0)], np.iinfo(np.int64).max)
    pick = np.argsort(c, axis=1, kind="stable")[:, :k]
    return np.concatenate([head, np.take_along_axis(rest, pick, 1)], 1)
