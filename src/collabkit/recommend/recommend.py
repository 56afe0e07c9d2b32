"""Top-N in the user's own ids, each item with a short reason: ``recommend(model, data, users)``.

Models do not store ratings, so what a user has seen (never recommended again with
``exclude_seen``) and what explains a recommendation both come from ``data``, the training
ratings. New users are folded in from their answers (``recommend_new_users``); a user with no
answers at all gets the average-taste user's list (see ``foldin.average_taste``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.data.interactions import Ratings
from collabkit.data.vocab import UnknownIdError
from collabkit.models.base import BIASES, FACTORS, NEIGHBOURS, PROBA, RATINGS, CollabModel, supports
from collabkit.models.linear import UserPrior
from collabkit.recommend.foldin import fold_in_frame
from collabkit.recommend.topn import _top_k, rated_csr, top_n

Unknown = Literal["error", "fallback"]
History = tuple[np.ndarray, np.ndarray, np.ndarray]  # CSR: indptr, item indices, ratings
FALLBACK_REASON = "no ratings from this user yet: the average-taste user's pick"
LOVE = 0.75  # "you'll love it": a rating in the top quarter of the scale (4 or 5 of 1-5 stars)


@torch.no_grad()
def recommend(
    model: CollabModel,
    data: Ratings | None,
    users: Any = None,
    n: int = 10,
    *,
    exclude_seen: bool = True,
    candidates: Iterable[Any] | None = None,
    explain: bool = True,
    unknown: Unknown = "error",
    prior: UserPrior | None = None,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Top-``n`` items for ``users`` (raw ids; one id, a list, or None = every known user).

    Returns a long frame, best first per user: user, rank (1 = best), item, score, title (when
    ``items``/``data.items`` has titles), because, and for models that give a distribution
    (PROBA) p_love: the probability of a rating of ``love_at(model)`` or more. ``data`` holds
    the training ratings: with ``exclude_seen`` a user's rated items are never recommended, and
    ``because`` names the (up to two) items the user rated highly (at or above their own mean)
    nearest the recommendation in factor space (cosine); a kind that ranks by item biases alone
    says that instead (``reason_biases``). ``candidates`` (raw item ids) restricts
    the catalogue. Unknown users raise UnknownIdError (``unknown="error"``) or get the
    average-taste user's list (``unknown="fallback"``; ``prior`` from ``model.user_prior``
    saves recomputing it). Lists are shorter than ``n`` only when fewer
    candidates remain. Deterministic: ties go to the lower item index.
    """
    n = _check_n(model, n)
    if exclude_seen and data is None:
        raise ValueError(
            "exclude_seen needs data (the training ratings) to know what each user has rated; "
            "pass it, or exclude_seen=False"
        )
    raw = _as_ids(model.users.ids if users is None else users)
    idx = model.users.lookup(raw, strict=False)
    new = idx < 0
    if new.any() and unknown != "fallback":
        if unknown != "error":
            raise ValueError(f"unknown must be 'error' or 'fallback', not {unknown!r}")
        raise UnknownIdError(
            f"unknown user id(s) {raw[new][:5].tolist()}; the model knows {len(model.users)} users. "
            "Pass unknown='fallback' for the average-taste list, or fold them in from a few "
            "ratings with recommend_new_users"
        )
    history = rated_csr(model, data) if data is not None else None
    ids = model.users.decode(np.maximum(idx, 0))  # the model's own ids: "42" typed on a CLI is 42
    reprs = None
    if new.any():
        ids = ids.astype(object)
        ids[new] = raw[new]
        prior = prior or model.user_prior(data)
        reprs = model.user_repr(torch.from_numpy(np.maximum(idx, 0))).double()
        reprs[torch.from_numpy(new)] = prior.mean
    return _recommend(
        model, ids, idx, n, reprs=reprs, history=history, exclude_seen=exclude_seen,
        candidates=candidates, explain=explain, titles=_titles_table(items, data),
        reason=np.where(new, FALLBACK_REASON, ""),
    )  # fmt: skip


@torch.no_grad()
def recommend_new_users(
    model: CollabModel,
    answers: Mapping[Any, float] | pd.DataFrame,
    n: int = 10,
    *,
    candidates: Iterable[Any] | None = None,
    explain: bool = True,
    prior: UserPrior | None = None,
    items: pd.DataFrame | None = None,
    user: Any = "new",
) -> pd.DataFrame:
    """Fold in users the model never saw from their answers, then recommend (same frame as above).

    ``answers`` is {item: rating} for one user (named ``user``) or a frame item, rating[, user].
    Answered items are never recommended back. No answers at all gives the average-taste list.
    ``prior``: pass ``model.user_prior(training_ratings)`` for the prior matched to training
    (computed once, reused); the default is built from the model alone.
    """
    n = _check_n(model, n)
    frame = _answers_frame(answers, user)
    users = np.unique(frame["user"].to_numpy()) if len(frame) else np.array([user], dtype=object)
    users, reprs = fold_in_frame(model, frame, prior, users)
    history = _history_of(model, frame, users)
    reason = np.where(np.diff(history[0]) == 0, FALLBACK_REASON, "")
    return _recommend(
        model, users, np.arange(len(users)), n, reprs=reprs, history=history, exclude_seen=True,
        candidates=candidates, explain=explain, titles=_titles_table(items, None), reason=reason,
    )  # fmt: skip


def explain_items(
    model: CollabModel,
    recs: np.ndarray,
    history: History,
    rows: np.ndarray,
    k: int = 2,
    vectors: Tensor | None = None,
) -> np.ndarray:
    """(U, n, k) item indices (-1 padded): for each recommendation, the user's liked items nearest it.

    Liked = rated at or above the user's own mean rating and the training mean; nearness = cosine similarity of the
    items' factor vectors (the item representation without its bias), or the kind's own item
    similarities (NEIGHBOURS: knn's s_ij). ``rows`` (U,) index the users in ``history`` (-1: no
    history, so no reason). ``vectors``: ``unit_factors(model)`` computed once by the caller.
    """
    out = np.full((*recs.shape, k), -1, dtype=np.int64)
    own = supports(model, NEIGHBOURS)
    vectors = unit_factors(model) if vectors is None else vectors
    if (vectors.shape[1] == 0 and not own) or not recs.size:
        return out
    floor = float(model.meta.get("global_mean", -np.inf)) if supports(model, RATINGS) else -np.inf  # clicks: any
    owner, liked = _liked(history, rows, floor)  # liked item indices, grouped by user
    per = np.bincount(owner, minlength=len(rows))
    first = np.cumsum(per) - per
    by_size = np.argsort(per, kind="stable")  # users with as many liked items side by side:
    s = 0  # each chunk pads to its own longest list, not the longest of all
    while s < len(by_size):
        chunk = max(1, min(len(by_size) - s, 2**22 // (recs.shape[1] * max(1, int(per[by_size[s]])))))
        while chunk > 1 and chunk * recs.shape[1] * max(1, int(per[by_size[s + chunk - 1]])) > 2**22:
            chunk //= 2  # ~4M similarities a step
        users = by_size[s : s + chunk]
        width = max(1, int(per[users].max()))
        pos = np.arange(width)
        lk = np.where(pos < per[users, None], liked[np.minimum(first[users, None] + pos, max(len(liked) - 1, 0))], -1) if len(liked) else np.full((len(users), 1), -1)
        r, lk = torch.from_numpy(recs[users]), torch.from_numpy(lk)
        if own:
            sims = model.item_similarity(r.clamp(min=0).unsqueeze(2), lk.clamp(min=0).unsqueeze(1)).float()
        else:
            sims = torch.bmm(vectors[r.clamp(min=0)], vectors[lk.clamp(min=0)].transpose(1, 2))  # (b, n, L)
        sims = sims.masked_fill((lk < 0).unsqueeze(1) | (r < 0).unsqueeze(2), -torch.inf)
        near, top = _top_k(sims.reshape(-1, width), min(k, width))  # best first, ties to the lower position
        pick = torch.gather(lk.unsqueeze(1).expand(-1, r.shape[1], -1).reshape(-1, width), 1, near)
        got = torch.where(torch.isfinite(top), pick, -1).view(len(users), r.shape[1], -1).numpy()
        out[users, :, : got.shape[2]] = got
        s += len(users)
    return out


# --- the shared path ------------------------------------------------------------------------------
def _check_n(model: CollabModel, n: int) -> int:
    """``n`` capped at the catalogue size, so nothing n-sized is allocated (-n 10**8 used 12 GB)."""
    if n < 1:
        raise ValueError(f"n (the list length) must be at least 1, got {n}")
    return min(n, len(model.items))


def _recommend(
    model: CollabModel,
    users: np.ndarray,
    rows: np.ndarray,
    n: int,
    *,
    reprs: Tensor | None,
    history: History | None,
    exclude_seen: bool,
    candidates: Iterable[Any] | None,
    explain: bool,
    titles: pd.Series | None,
    reason: np.ndarray,
) -> pd.DataFrame:
    """Rank, explain and lay out as a frame.

    ``users`` are the ids to print, ``rows`` (U,) index them in ``history`` (-1: none) and
    ``reprs`` (U, D), when given, replaces the model's lookup of user representations.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    cand = None if candidates is None else model.items.lookup(_as_ids(candidates))
    seen = history[:2] if exclude_seen and history is not None else None
    items, scores = top_n(model, rows, n, seen=seen, candidates=cand, reprs=reprs)
    keep = items.ravel() >= 0
    ids = model.items.decode(np.maximum(items.ravel(), 0))
    frame = pd.DataFrame(
        {
            "user": np.repeat(users, n),
            "rank": np.tile(np.arange(1, n + 1), len(users)),
            "item": ids,
            "score": scores.ravel(),
        }
    )
    if titles is not None:
        frame["title"] = _titles(titles, ids)
    if supports(model, PROBA):
        frame["p_love"] = _p_love(model, rows, reprs, items).ravel()
    if explain:
        text = np.repeat(reason.astype(object), n)
        if history is not None:
            because = explain_items(model, items, history, rows).reshape(-1, 2)
            names = lambda idx: _titles(titles, model.items.decode(idx))
            text = np.where(text == "", because_text(because, names), text)
        frame["because"] = with_item_reasons(text, items.ravel(), reason_biases(model))
    return frame[keep].reset_index(drop=True)


def love_at(model: CollabModel) -> float | None:
    """The lowest rating level in the top quarter of a PROBA model's levels (4 of 1-5 stars, 4 of
    0.5-5); None for models without a distribution."""
    if not supports(model, PROBA):
        return None
    levels = np.asarray(model.config.levels, dtype=np.float64)
    return float(levels[levels >= levels[0] + LOVE * (levels[-1] - levels[0]) - 1e-9][0])


def _p_love(model: CollabModel, rows: np.ndarray, reprs: Tensor | None, items: np.ndarray) -> np.ndarray:
    """(U, n) P(r >= love_at) of the recommended ``items`` (U, n), for the users ``reprs`` (U, D)
    or, without them, the model's users ``rows``."""
    if reprs is None:
        reprs = model.user_repr(torch.from_numpy(np.maximum(rows, 0)))
    ir = model.item_repr(torch.from_numpy(np.maximum(items, 0)).reshape(-1))
    ir = ir.reshape(*items.shape, ir.shape[-1])  # (U, n, D)
    p = model.proba_repr(reprs.to(ir.dtype).unsqueeze(1), ir)  # (U, n, K)
    top = torch.from_numpy(np.asarray(model.config.levels) >= love_at(model) - 1e-9)
    return p[..., top].sum(-1).numpy()


def because_text(because: np.ndarray, names: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """'because you rated A and B highly' from (R, 2) item indices (-1 = none), vectorised;
    ``names`` maps item indices to what to call them (titles, else ids)."""
    first, second = (names(np.maximum(because[:, j], 0)) for j in (0, 1))
    both = "because you rated " + first + " and " + second + " highly"
    one = "because you rated " + first + " highly"
    return np.where(because[:, 1] >= 0, both, np.where(because[:, 0] >= 0, one, ""))


def reason_biases(model: CollabModel) -> np.ndarray | None:
    """(n_items,) item biases, the reason of an item no liked item explains: every reason of a kind
    with biases but neither factors nor similarities (baseline, bias: it ranks a user's items by
    their bias), and of a user with no rating at or above their mean and the training mean; None
    for kinds without biases."""
    if not supports(model, BIASES):
        return None
    return model.biases("item").double().numpy()


def with_item_reasons(text: np.ndarray, items: np.ndarray, biases: np.ndarray | None) -> np.ndarray:
    """``text`` with each empty reason replaced by the item's bias ('rated above average overall
    (item bias +0.62)'; ``items`` (R,) item indices, -1 = none) when ``reason_biases`` gave them."""
    empty = np.flatnonzero(text == "") if biases is not None else ()
    if not len(empty):
        return text
    b = biases[np.maximum(items[empty], 0)]
    out = text.astype(object)
    out[empty] = [f"rated {'above' if x >= 0 else 'below'} average overall (item bias {x:+.2f})" for x in b]
    return out


def _liked(history: History, rows: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(owner, item) of the items each user ``rows[owner]`` rated at or above their own mean and
    at or above ``floor`` (the training ratings' mean: one 1-star rating is its user's mean, but
    not "rated highly"), grouped by owner in history order."""
    indptr, items, ratings = history
    known = rows >= 0
    start = np.where(known, indptr[np.maximum(rows, 0)], 0)
    count = np.where(known, indptr[np.maximum(rows, 0) + 1], 0) - start
    owner = np.repeat(np.arange(len(rows)), count)
    flat = np.repeat(start - (np.cumsum(count) - count), count) + np.arange(count.sum())
    r = ratings[flat]
    mean = np.bincount(owner, weights=r, minlength=len(rows)) / np.maximum(count, 1)
    good = (r >= mean[owner] - 1e-6) & (r >= floor - 1e-6)
    return owner[good], items[flat[good]]


def unit_factors(model: CollabModel) -> Tensor:
    """(n_items, F) unit-length item factor vectors; (n_items, 0) for kinds without factors."""
    if not supports(model, FACTORS):
        return torch.zeros(len(model.items), 0)
    v = model.factors("item")
    return torch.nn.functional.normalize(v, dim=1) if v.shape[1] else v


def _history_of(model: CollabModel, answers: pd.DataFrame, users: np.ndarray) -> History:
    """CSR of new users' answers (rows in ``users`` order): what they have seen and liked."""
    u = pd.Index(users).get_indexer(answers["user"])
    i = model.items.lookup(answers["item"])
    r = answers["rating"].to_numpy(dtype=np.float32)
    order = np.lexsort((i, u))
    return np.r_[0, np.cumsum(np.bincount(u, minlength=len(users)))], i[order], r[order]


def _answers_frame(answers: Mapping[Any, float] | pd.DataFrame, user: Any) -> pd.DataFrame:
    if isinstance(answers, pd.DataFrame):
        missing = {"item", "rating"} - set(answers.columns)
        if missing:
            raise ValueError(f"answers lack column(s) {sorted(missing)}")
        frame = answers if "user" in answers.columns else answers.assign(user=user)
    else:
        frame = pd.DataFrame(
            {"user": user, "item": list(answers), "rating": list(answers.values())}
        )
    frame = frame[["user", "item", "rating"]].astype({"rating": np.float64})
    if frame.duplicated(["user", "item"]).any():
        raise ValueError("answers rate the same item twice for one user")
    return frame


def _as_ids(ids: Any) -> np.ndarray:
    """One raw id or many -> a 1-D array (strings and numbers stay whole)."""
    if isinstance(ids, (str, bytes)) or np.ndim(ids) == 0:
        return np.array([ids], dtype=object)
    arr = np.asarray(list(ids) if not hasattr(ids, "__len__") else ids)
    return arr.astype(object) if arr.dtype.kind in "OUS" else arr


def _titles_table(items: pd.DataFrame | None, data: Ratings | None) -> pd.Series | None:
    table = items if items is not None else (data.items if data is not None else None)
    if table is None or "title" not in table.columns:
        return None
    return table["title"]


def _titles(titles: pd.Series | None, ids: np.ndarray) -> np.ndarray:
    """Titles for raw item ids (the id itself where there is none), as an object array."""
    names = pd.Series(ids, dtype=object).astype(str).to_numpy(dtype=object)
    if titles is None:
        return names
    t = titles[~titles.index.duplicated()].reindex(ids).to_numpy(dtype=object)
    return np.where(pd.isna(t), names, t).astype(object)
