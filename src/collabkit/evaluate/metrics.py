r"""Rating and top-K ranking metrics as pure, vectorised numpy functions.

Rating metrics (``rating_metrics``), with errors :math:`e_j = \hat y_j - y_j` over N pairs::

    mse  = (1/N) * sum_j e_j^2
    rmse = sqrt(mse)
    mae  = (1/N) * sum_j |e_j|

Ranking metrics (``ranking_metrics``, ``per_user_ranking_metrics``, core ``hits_matrix``).

Inputs. ``recommended`` is an int array (n_users, L) of item indices, best first; row u is user u.
Short lists are padded with -1, and padding is never a hit. L may be smaller than k ("K larger
than the list"): only the first K' = min(k, L) columns are looked at, the missing positions
count as misses. ``relevant`` holds each user's held-out relevant items R_u, either as a list
of int arrays (one per row of ``recommended``) or as CSR ``(indptr, indices)``; a *tuple* is
always read as CSR, so pass a *list* for per-user arrays. Duplicate relevant items count once.
A user's top-k must not repeat an item (ValueError).

Let rel_u(r) = 1 if the item at rank r (1-based) of user u is in R_u, else 0; hits_u =
sum_{r<=k} rel_u(r); m_u = min(|R_u|, k). Per user:

    precision@k = hits_u / k          (always k, not the list length -- the standard convention,
                                       so short or padded lists are penalised)
    recall@k    = hits_u / |R_u|
    ndcg@k      = DCG / IDCG,  DCG = sum_{r<=k} rel_u(r) / log2(r + 1),
                               IDCG = sum_{r=1..m_u} 1 / log2(r + 1)      (binary gains)
    map@k       = (1 / m_u) * sum_{r<=k, rel_u(r)=1} precision@r,  precision@r = hits in top r / r
    hit_rate@k  = 1 if hits_u > 0 else 0
    mrr@k       = 1 / (rank of the first hit within k), 0 if there is none
    novelty@k   = mean over u's non-padding top-k items of pop_rank(item), where pop_rank is the
                  1-based rank of the item by ``item_popularity`` count (1 = most popular, tied
                  counts share the best rank: pop_rank(i) = 1 + #{j : pop[j] > pop[i]});
                  undefined (NaN) for a user whose top-k is all padding.
    arp@k       mean training count of u's non-padding top-k items (average recommendation
                popularity), NaN for an all-padding list
    aplt@k      share of u's non-padding top-k items in the long tail (``exposure.long_tail``)

Aggregation. Users with |R_u| = 0 are excluded from everything (they cannot be scored); every
metric above is the plain mean over the remaining users, whose number is ``n_users`` (novelty
averages over those of them with at least one recommended item). Over the same users:

    coverage@k  = |union_u top-k(u) \ {-1}| / n_items      (catalogue coverage)
    gini@k      Gini of the items' appearances in the top-k lists over the whole catalogue

``coverage@k`` and ``gini@k`` are reported only when ``n_items`` is given, ``novelty@k``,
``arp@k`` and ``aplt@k`` only when ``item_popularity`` is given. The popularity and exposure
measures are the definitions of ``collabkit.evaluate.exposure``, shared with the simulator and
the service's monitor. ``ranking_metrics`` is exactly the column mean of
``per_user_ranking_metrics`` (plus coverage), so both come from the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from collabkit.evaluate import exposure

PAD = -1
"""Item index used to pad recommendation lists shorter than L."""

Relevant = Sequence[np.ndarray] | tuple[np.ndarray, np.ndarray]
"""Per-user list of item arrays, or CSR ``(indptr, indices)`` (objects with ``.indptr``/``.indices``,
such as a scipy CSR matrix, are read as CSR too)."""


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (ties share their mean rank).

    1: the same order, -1: reversed; NaN below two values or when either is constant.
    """
    ra = pd.Series(np.asarray(a, dtype=np.float64)).rank().to_numpy()
    rb = pd.Series(np.asarray(b, dtype=np.float64)).rank().to_numpy()
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def rating_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE and MAE of ``y_pred`` against ``y_true``: mean(e^2), sqrt(mean(e^2)), mean(|e|).

    Both are flattened to 1-D; raises ValueError if their lengths differ or they are empty.
    """
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("rating_metrics needs at least one (y_true, y_pred) pair")
    err = p - t
    mse = float(np.mean(err * err))
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(err)))}


# --------------------------------------------------------------------------- input handling


def _check_recommended(recommended: np.ndarray) -> np.ndarray:
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D (n_users, L), got shape {rec.shape}")
    if rec.size and rec.dtype.kind not in "iu":
        raise ValueError(f"recommended must hold integer item indices, got dtype {rec.dtype}")
    rec = rec.astype(np.int64, copy=False)
    if rec.size and rec.min() < PAD:
        raise ValueError(f"recommended holds negative item indices other than the padding {PAD}")
    return rec


def _relevant_pairs(relevant: Relevant, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """``relevant`` as parallel (user, item) int64 arrays, users in 0..n_users-1."""
    if hasattr(relevant, "indptr") and hasattr(relevant, "indices"):  # e.g. a scipy CSR matrix
        relevant = (np.asarray(relevant.indptr), np.asarray(relevant.indices))
    if isinstance(relevant, tuple):
        if len(relevant) != 2:
            raise ValueError(
                "a tuple `relevant` must be CSR (indptr, indices); pass a list otherwise"
            )
        indptr = np.asarray(relevant[0]).astype(np.int64, copy=False).ravel()
        items = np.asarray(relevant[1]).ravel()
        if indptr.size != n_users + 1:
            raise ValueError(
                f"CSR indptr has length {indptr.size}, expected n_users + 1 = {n_users + 1}"
            )
        if indptr[0] != 0 or indptr[-1] != items.size or np.any(np.diff(indptr) < 0):
            raise ValueError(
                "CSR indptr must start at 0, be non-decreasing and end at len(indices)"
            )
        counts = np.diff(indptr)
    else:
        parts = [np.asarray(a).ravel() for a in relevant]
        if len(parts) != n_users:
            raise ValueError(f"relevant has {len(parts)} users but recommended has {n_users} rows")
        counts = np.fromiter((p.size for p in parts), dtype=np.int64, count=n_users)
        nonempty = [p for p in parts if p.size]
        items = np.concatenate(nonempty) if nonempty else np.empty(0, dtype=np.int64)
    if items.size and items.dtype.kind not in "iu":
        raise ValueError(f"relevant items must be integer indices, got dtype {items.dtype}")
    items = items.astype(np.int64, copy=False)
    if items.size and items.min() < 0:
        raise ValueError("relevant items must be non-negative item indices")
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    return users, items


def _hits_and_counts(
    recommended: np.ndarray, relevant: Relevant, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top-k slice of recommended, hits (n_users, K') bool, |R_u| per user)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    rec = _check_recommended(recommended)
    n_users = rec.shape[0]
    top = rec[:, : min(int(k), rec.shape[1])]
    users, items = _relevant_pairs(relevant, n_users)
    # Encode (user, item) as user * width + item so one sorted int64 array answers every lookup.
    width = int(max(top.max(initial=0), items.max(initial=0))) + 1
    if n_users * width >= 2**63:
        raise ValueError("too many users x items to encode (user, item) pairs as int64 keys")
    rel_keys = np.unique(users * width + items)  # sorted, duplicates dropped
    n_rel = np.bincount(rel_keys // width, minlength=n_users)
    valid = top != PAD
    if top.shape[1] > 1:  # a repeated item would be counted twice
        srt = np.sort(np.where(valid, top, -np.arange(1, top.shape[1] + 1)), axis=1)
        if np.any(srt[:, 1:] == srt[:, :-1]):
            raise ValueError("a user's top-k recommendations repeat an item")
    keys = np.arange(n_users, dtype=np.int64)[:, None] * width + top
    if rel_keys.size:
        pos = np.minimum(np.searchsorted(rel_keys, keys), rel_keys.size - 1)
        hits = valid & (rel_keys[pos] == keys)
    else:
        hits = np.zeros(top.shape, dtype=bool)
    return top, hits, n_rel


def hits_matrix(recommended: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Boolean (n_users, min(k, L)): ``hits[u, r]`` = the item at rank r+1 of user u is in R_u.

    Padding (-1) is never a hit. Lookup is vectorised: (user, item) pairs become int64 keys
    ``user * width + item`` searched in the sorted array of relevant keys.
    """
    return _hits_and_counts(recommended, relevant, k)[1]


def _popularity_rank(item_popularity: np.ndarray) -> np.ndarray:
    """1-based popularity rank per item: 1 + #{items with a strictly larger count}."""
    pop = np.asarray(item_popularity, dtype=np.float64).ravel()
    srt = np.sort(pop)
    return 1.0 + (pop.size - np.searchsorted(srt, pop, side="right"))


def _per_user(
    recommended: np.ndarray, relevant: Relevant, k: int, item_popularity: np.ndarray | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """The shared vectorised core: (per-user frame, top-k slice of the rows kept in it)."""
    top, hits, n_rel = _hits_and_counts(recommended, relevant, k)
    keep = n_rel > 0
    top, hits, n_rel = top[keep], hits[keep], n_rel[keep]
    kk = top.shape[1]  # K' = min(k, L) positions actually present
    n_hits = hits.sum(axis=1)
    cum_hits = np.cumsum(hits, axis=1, dtype=np.int64)
    ranks = np.arange(1, kk + 1, dtype=np.float64)
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # 1/log2(r+1), r = 1..k
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[m] = IDCG with m relevant items
    m = np.minimum(n_rel, k)
    dcg = hits @ discount[:kk] if kk else np.zeros(len(n_rel))
    first = np.argmax(hits, axis=1) if kk else np.zeros(len(n_rel), dtype=np.int64)
    cols: dict[str, np.ndarray] = {
        "n_relevant": n_rel,
        "n_hits": n_hits,
        f"precision@{k}": n_hits / k,
        f"recall@{k}": n_hits / n_rel,
        f"ndcg@{k}": dcg / ideal[m],
        f"map@{k}": (hits * (cum_hits / ranks)).sum(axis=1) / m,
        f"hit_rate@{k}": (n_hits > 0).astype(np.float64),
        f"mrr@{k}": np.where(n_hits > 0, 1.0 / (first + 1.0), 0.0),
    }
    if item_popularity is not None:
        pop = np.asarray(item_popularity, dtype=np.float64).ravel()
        if top.size and top.max() >= pop.size:
            raise ValueError(
                f"recommended item {top.max()} outside item_popularity (length {pop.size})"
            )
        cols[f"novelty@{k}"] = exposure.arp(top, _popularity_rank(pop))  # mean rank, not count
        cols[f"arp@{k}"] = exposure.arp(top, pop)
        cols[f"aplt@{k}"] = exposure.aplt(top, exposure.long_tail(pop))
    return pd.DataFrame(cols, index=pd.Index(np.flatnonzero(keep), name="user")), top


def per_user_ranking_metrics(
    recommended: np.ndarray,
    relevant: Relevant,
    k: int,
    item_popularity: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per user with |R_u| > 0 (index ``user`` = row of ``recommended``).

    Columns ``n_relevant``, ``n_hits``, then precision/recall/ndcg/map/hit_rate/mrr ``@k`` and,
    given ``item_popularity``, ``novelty@k``, ``arp@k`` and ``aplt@k``; definitions in the module
    docstring.
    """
    return _per_user(recommended, relevant, k, item_popularity)[0]


def ranking_metrics(
    recommended: np.ndarray,
    relevant: Relevant,
    k: int,
    n_items: int | None = None,
    item_popularity: np.ndarray | None = None,
) -> dict[str, float]:
    """Top-k metrics averaged over users with at least one relevant item (see module docstring).

    Keys: precision/recall/ndcg/map/hit_rate/mrr ``@k``, ``coverage@k`` and ``gini@k`` if
    ``n_items`` is given, ``novelty@k``, ``arp@k`` and ``aplt@k`` if ``item_popularity`` is given,
    and ``n_users`` (users averaged over).
    Raises ValueError if no user has a relevant item.
    """
    frame, top = _per_user(recommended, relevant, k, item_popularity)
    if frame.empty:
        raise ValueError("no user has any relevant item: nothing to average")
    names = [f"{name}@{k}" for name in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")]
    out = {name: float(frame[name].mean()) for name in names}
    if n_items is not None:
        if n_items < 1:
            raise ValueError(f"n_items must be positive, got {n_items}")
        counts = exposure.list_counts(top, n_items)
        out[f"coverage@{k}"] = exposure.coverage(counts)
        out[f"gini@{k}"] = exposure.gini(counts)
    if item_popularity is not None:
        for name in ("novelty", "arp", "aplt"):
            col = frame[f"{name}@{k}"]
            out[f"{name}@{k}"] = float(col.mean()) if col.notna().any() else float("nan")
    out["n_users"] = len(frame)
    return out
