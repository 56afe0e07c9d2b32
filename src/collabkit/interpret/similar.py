"""Similar items and users: nearest neighbours by cosine similarity of learned factors.

``factors`` reads the latent factors of any model from its representation (``item_repr`` /
``user_repr`` of every index), dropping the bias column of the dot-bias family, so the same code
serves DotProduct, DotProductBias, EmbeddingNN, the hybrid and the implicit rankers. Models with
no factors (mean, bias, most-popular) are refused with a clear error. A kind with item-item
similarities of its own (NEIGHBOURS: knn) gives its similar items by those instead.

Neighbours need support: an item (or user) with a handful of ratings has a factor vector that
has barely moved from its random start, so with the training ratings given, those with fewer
than ``min_ratings`` are left out (``default_min_ratings``: the median number of ratings, kept
between 5 and 20: 20 on ML-100k, 5 for Epinions' items) and the result says how many
(``frame.attrs``: min_ratings, left_out). An ensemble's factors are its representation member's.

Titles are looked up exactly (ignoring case and spacing); a title that is not found raises
``TitleNotFoundError`` carrying the nearest titles (difflib), so a typo gets suggestions.
"""

from __future__ import annotations

import difflib
import re

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.data.interactions import Ratings
from collabkit.data.vocab import UnknownIdError, Vocab
from collabkit.models.base import NEIGHBOURS, CollabModel, supports

SIDES = ("item", "user")
#: the default support a neighbour needs lies between these (``default_min_ratings``)
MIN_RATINGS_RANGE = (5, 20)


class TitleNotFoundError(UnknownIdError):
    """No item has this title (or id); ``suggestions`` holds the closest titles."""

    def __init__(self, message: str, suggestions: list[str]) -> None:
        super().__init__(message)
        self.suggestions = suggestions


def factors(model: CollabModel, side: str = "item") -> Tensor:
    """(n, F) latent factors of every item (or user): its representation minus any bias column.

    Raises CapabilityError for kinds without factors, ValueError for fewer than two factors
    (nothing to compare directions of).
    """
    check_side(side)
    rep = model.factors(side)
    if rep.shape[1] < 2:
        raise ValueError(
            f"a {model.kind!r} model has no {side} factors to interpret (width {rep.shape[1]}); "
            "train one with latent factors (dot, dot-bias, nn, hybrid, ...)"
        )
    return rep


def find_item(model: CollabModel, query: object, items: pd.DataFrame | None = None) -> object:
    """The raw id of the item ``query`` names: an id the model knows, or an exact title.

    Titles match ignoring case and spacing; two items with the same title are ambiguous (pass
    the id). Anything else raises TitleNotFoundError with up to five near titles.
    """
    if query in model.items:
        return model.items.decode(model.items.lookup([query]))[0]
    if items is None or "title" not in items.columns:
        raise TitleNotFoundError(f"unknown item id {query!r} (no titles to search)", [])
    titles = items["title"][items.index.isin(model.items.ids)].dropna().astype(str)
    key = titles.map(_norm)
    hits = titles.index[key == _norm(str(query))]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise TitleNotFoundError(
            f"{len(hits)} items are titled {query!r} (ids {', '.join(map(str, hits))}); pass an id",
            [],
        )
    near = suggest(str(query), titles)
    hint = f"; did you mean: {'; '.join(near)}?" if near else ""
    raise TitleNotFoundError(f"no item titled {query!r}{hint}", near)


def suggest(query: str, titles: pd.Series, n: int = 5) -> list[str]:
    """Up to ``n`` titles close to ``query``: those containing it first, then difflib's nearest."""
    q = _norm(query)
    unique = pd.unique(titles)
    by_key = {_norm(t): t for t in unique}
    containing = sorted((k for k in by_key if q and q in k), key=len)
    close = difflib.get_close_matches(q, list(by_key), n=n, cutoff=0.5)
    return [by_key[k] for k in dict.fromkeys(containing + close)][:n]


def default_min_ratings(counts: pd.Series | np.ndarray) -> int:
    """The support a neighbour needs unless told: the median number of ratings of the rated items
    (or users), kept within MIN_RATINGS_RANGE -- 20 on ML-100k (median 27 a film), 5 on Epinions
    (median 1 a product). Scaled to the data: where most items are rated once, 20 would leave
    almost nothing to show."""
    median = float(np.median(np.asarray(counts))) if len(counts) else 0.0
    lo, hi = MIN_RATINGS_RANGE
    return int(min(hi, max(lo, round(median))))


def supported(vocab: Vocab, ratings: Ratings, side: str, min_ratings: int | None = None) -> tuple[np.ndarray, pd.Series, int, int]:
    """(indices with >= min_ratings training ratings, every index's count, min_ratings, how many
    known ones were left out) for one side of a model; ``min_ratings`` None: the default rule."""
    counts = ratings.frame[side].value_counts()
    if min_ratings is None:
        min_ratings = default_min_ratings(counts)
    n = pd.Series(counts.reindex(vocab.ids).fillna(0).to_numpy(np.int64), index=vocab.ids)
    keep = np.flatnonzero(n.to_numpy() >= min_ratings)
    return keep, n, int(min_ratings), int(len(n) - len(keep))


def similar_items(
    model: CollabModel,
    item: object,
    k: int = 5,
    items: pd.DataFrame | None = None,
    candidates: object | None = None,
    ratings: Ratings | None = None,
    min_ratings: int | None = None,
) -> pd.DataFrame:
    """The ``k`` items whose factors point the most like ``item``'s (id or title).

    cos(i, j) = f_i . f_j / (|f_i| |f_j|). Columns: item, similarity (+ title, genres when
    ``items`` metadata is given; n_ratings with ``ratings``), most similar first; ties go to the
    lower index. Cosine ignores how long a factor vector is, so rarely-rated items (short, noisy
    vectors) can come up: with ``ratings`` (the training ratings) items with fewer than
    ``min_ratings`` (default: ``default_min_ratings``) are left out, and ``frame.attrs`` says how
    many; ``candidates`` (raw item ids) restricts the neighbours further.
    """
    raw = find_item(model, item, items)
    allowed = None if candidates is None else model.items.lookup(candidates, strict=False)
    out = _nearest_supported(model, "item", int(model.items.lookup([raw])[0]), k, allowed, ratings, min_ratings)
    if items is not None:
        for col in ("title", "genres"):
            if col in items.columns:
                out[col] = items[col].reindex(out["item"]).to_numpy()
    return out


def similar_users(
    model: CollabModel, user: object, k: int = 5, ratings: Ratings | None = None, min_ratings: int | None = None
) -> pd.DataFrame:
    """The ``k`` users whose factors are most cosine-similar to ``user``'s (a raw user id); with
    ``ratings`` users with fewer than ``min_ratings`` are left out, as in ``similar_items``."""
    idx = int(model.users.lookup([user])[0])  # unknown ids raise UnknownIdError
    return _nearest_supported(model, "user", idx, k, None, ratings, min_ratings)


def _nearest_supported(
    model: CollabModel, side: str, idx: int, k: int, allowed: np.ndarray | None,
    ratings: Ratings | None, min_ratings: int | None,
) -> pd.DataFrame:  # fmt: skip
    """``_nearest`` among the supported rows (with ``ratings``), the support in the frame."""
    if ratings is None:
        out = _nearest(model, side, idx, k, allowed)
        out.attrs.update(min_ratings=0, left_out=0)
        return out
    vocab = model.items if side == "item" else model.users
    keep, counts, min_ratings, left_out = supported(vocab, ratings, side, min_ratings)
    if allowed is not None:
        keep = np.intersect1d(keep, allowed)
    out = _nearest(model, side, idx, k, keep)
    out["n_ratings"] = counts.reindex(out[side]).to_numpy()
    out.attrs.update(min_ratings=min_ratings, left_out=left_out)
    return out


def _nearest(
    model: CollabModel, side: str, idx: int, k: int, allowed: np.ndarray | None = None
) -> pd.DataFrame:
    """Top-k rows by cosine similarity to row ``idx`` (itself excluded), among ``allowed`` indices;
    items by the kind's own similarities when it has them (NEIGHBOURS)."""
    if side == "item" and supports(model, NEIGHBOURS):
        row = model.item_similarity(torch.tensor(idx), torch.arange(len(model.items)))
        order, sims = nearest_of(row.double().numpy(), idx, k, allowed)
    else:
        f = torch.nn.functional.normalize(factors(model, side), dim=1)  # zero rows stay zero
        order, sims = nearest(f, idx, k, allowed)
    vocab = model.items if side == "item" else model.users
    return pd.DataFrame({side: vocab.decode(order), "similarity": sims})


def nearest(unit: Tensor, idx: int, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosines) of the ``k`` rows of ``unit`` (unit-length vectors) nearest row ``idx``,
    itself excluded, among ``allowed`` indices; most similar first, ties to the lower index.

    A partition finds the k-th best cosine, so only the candidates at or above it are sorted.
    """
    if unit.shape[1] < 2:
        raise ValueError(f"{unit.shape[1]} factor(s): nothing to compare directions of")
    return nearest_of((unit @ unit[idx]).double().numpy(), idx, k, allowed)


def nearest_of(sims: np.ndarray, idx: int, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities) of the ``k`` largest of ``sims`` (every row's similarity to row
    ``idx``), ``idx`` excluded, among ``allowed``; most similar first, ties to the lower index."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    keep = np.ones(len(sims), dtype=bool) if allowed is None else np.isin(np.arange(len(sims)), allowed)
    keep[idx] = False  # not itself
    key = np.where(keep, -sims, np.inf)  # ascending key: best first; left out: last
    k = min(k, int(keep.sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    cut = np.partition(key, k - 1)[k - 1]
    candidates = np.flatnonzero(key <= cut)  # in index order: the stable sort keeps ties so
    order = candidates[np.argsort(key[candidates], kind="stable")][:k]
    return order, sims[order]


def _norm(title: str) -> str:
    return re.sub(r"\s+", " ", title).strip().casefold()


def check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
