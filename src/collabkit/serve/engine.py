"""The serving engine: a model version prepared once, so that a request is a few array operations.

``Engine.build`` runs when a version is loaded (start-up, promotion, rollback) and prepares
everything a request needs: the text id -> index maps, every item's display name, the model's
scorer with its item side built (``CollabModel.scorer``), unit factor vectors for reasons and
neighbours, the fold-in prior measured on the store's ratings, the onboarding questions, the
average-taste list, and each known user's top-K list with what they had rated at load excluded.
A request then goes store -> engine -> response: the user's stored ratings arrive as arrays (one
indexed query), seen items are masked by index, reasons are computed on arrays, and nothing per
request builds a DataFrame. The requests a worker receives together are answered together
(``answer``, driven by ``serve.batching``): their users are folded in together and scored in one
``top_n``, and each gets the answer it would get alone.

The large arrays (the top-K lists with their scores, reasons and P(love), what each known user
had rated at the build, the unit vectors) are built once per model and written beside its folder
(``engine_cache``); every other engine of that model, in any worker process, maps them read-only.
A list built before later ratings stays right: a known user whose stored ratings differ from those
captured with it is scored afresh (``place``). Telling costs one primary-key read: with the
ratings the build captures each user's stamp (``store.User.stamp``, a new random number with
every change to their ratings, set by the store's triggers, read before the ratings so it is never
newer than them); a stored stamp still equal to it means the precomputed list (``unchanged``),
anything else a read of the user's ratings, compared with those captured.

Three ways to place a user, named in every answer (``mode``), the same as ``recommend``'s:
- ``model``: the model knows the user and nothing they rated came after its training: their
  precomputed list (scored afresh when their stored ratings changed since the load);
- ``fold-in``: the user is new to the model or rated after it was trained: their stored ratings
  are folded in (``model.fold_in``), no retraining needed;
- ``average-taste``: no usable ratings at all: the average-taste user's list.
The answers equal ``recommend``/``recommend_new_users`` on the same ratings: same items, order,
scores and reasons (``tests/serve/test_engine.py`` checks every kind).

New items (``new_items`` = k > 0, kinds with ITEM_FOLD_IN): an item the version does not know
that has k ratings in the store by users it knows is placed by item fold-in when the engine is
built (``CollabModel.with_items``): the engine serves the version grown by those items, and
``new_item`` marks them (responses say so). ``Live`` rebuilds the engine in the background when
more items reach k; requests never compute a fold-in of items.

Large catalogues (``ann_items`` items or more, default ANN_ITEMS = 1,000,000; the setting
COLLABKIT_ANN_ITEMS): for kinds that rank by an inner product, the lists come from an approximate
index built at load (``recommend.ann``: faiss IVF, nprobe set for recall@10 >= 0.97 against exact
search), its candidates scored exactly; below the threshold, or for other kinds, search is exact.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.checkpoint import load_items, load_model
from collabkit.data.interactions import Ratings
from collabkit.interpret.similar import nearest, nearest_of
from collabkit.models.base import (
    FACTORS,
    FOLD_IN,
    ITEM_FOLD_IN,
    NEIGHBOURS,
    PROBA,
    CollabModel,
    require,
    supports,
)
from collabkit.models.linear import UserPrior, padded
from collabkit.recommend.ann import ANN_ITEMS, CALIBRATION_USERS, ItemIndex, describe, indexable
from collabkit.recommend.onboard import Questionnaire
from collabkit.recommend.recommend import (
    FALLBACK_REASON,
    _p_love,
    because_text,
    explain_items,
    love_at,
    reason_biases,
    unit_factors,
    with_item_reasons,
)
from collabkit.recommend.topn import top_n
from collabkit.serve.engine_cache import cache_folder, cache_key, shared_arrays

log = logging.getLogger("collabkit.serve")
N_QUESTIONS = 50  # onboarding questions kept per model version
TOP_K = 100  # each known user's precomputed list: the longest list a request may ask for


class Place(NamedTuple):
    """A request placed (``Engine.place``): how it is answered ("precomputed", "model" or
    "fold-in"), the user's row in the model (-1: none), their rated item indices (sorted), their
    ratings, and the list's length."""

    how: str
    row: int
    items: np.ndarray
    ratings: np.ndarray
    n: int


@dataclass
class Answer:
    """A recommendation list: item indices, scores, reasons (and P(love) for PROBA kinds)."""

    mode: str
    items: np.ndarray  # (k,) item indices, best first
    scores: np.ndarray  # (k,) float32
    because: np.ndarray  # (k,) str
    p_love: np.ndarray | None = None  # (k,) or None


class Engine:
    """One model version, ready to answer (see the module docstring). Read-only once built, so
    the threads of a worker share it without locks."""

    def __init__(self, version: int, path: str, trained_through: float, model: CollabModel,
                 items: pd.DataFrame | None, ratings: pd.DataFrame, top_k: int = TOP_K,
                 scale: Any = None, new_items: int = 0, ann_items: int = ANN_ITEMS,
                 cache: Path | None = None, stamps: dict[str, int] | None = None) -> None:  # fmt: skip
        t0 = time.perf_counter()
        # the lists below are big products: every core while building, then one per request (many
        # small requests in parallel beat one request on many threads), also when the build fails
        torch.set_num_threads(os.cpu_count() or 1)
        try:
            self.version, self.path, self.trained_through = version, path, trained_through
            self.scale = scale  # the store's rule (``validation.Scale``): stored values off it are not used
            # new items: the version grown by the items it does not know that have k ratings (module doc)
            self.new_items = new_items if supports(model, ITEM_FOLD_IN) else 0
            n_trained = len(model.items)
            model = _with_new_items(model.eval(), ratings, self.new_items)
            self.new_item = np.arange(len(model.items)) >= n_trained  # (n_items,) placed by fold-in
            self.model, self.items = model, items  # eval() already, grown or not
            self.item_text = np.array([str(i) for i in model.items.ids], dtype=object)
            self.item_index = {s: k for k, s in enumerate(self.item_text)}
            self.user_index = {str(u): k for k, u in enumerate(model.users.ids)}
            self.item_ids = dict(zip(self.item_text, model.items.ids.tolist()))  # text -> the model's own id
            self.waiting = _unknown_counts(self.item_text, ratings) if self.new_items else {}  # item -> its ratings
            self.names, self.titles = _names(model, items)
            self.item_biases = reason_biases(model)  # reasons no liked item gives (None: no biases)
            self.scorer = model.scorer()
            self.love_at = love_at(model)
            self.foldable = supports(model, FOLD_IN)
            train = _store_ratings(ratings)
            self.prior: UserPrior | None = model.user_prior(train) if self.foldable else None
            self.questions = _questions(model, train, self.prior) if self.foldable else []
            self.top_k = min(top_k, len(model.items))
            self.index = _index(self, ratings, ann_items)  # None: exact search; the lists go through it
            key = cache_key(model, self.top_k) if cache is not None else {}
            self._adopt(shared_arrays(cache, key, lambda: self._precompute(ratings, stamps)))
            self.average = self._average_taste()
            self.load_seconds = time.perf_counter() - t0
        finally:
            torch.set_num_threads(1)

    @classmethod
    def load(cls, version: int, path: str, trained_through: float, ratings: pd.DataFrame, scale: Any = None,
             new_items: int = 0, ann_items: int = ANN_ITEMS, stamps: dict[str, int] | None = None) -> Engine:  # fmt: skip
        """Load a saved version's folder; ``ratings`` (the store's usable ones: user, item,
        rating, written_at) give item popularity, the prior's calibration, what each known user has
        rated and the new items (``new_items``: k, 0 = none); ``scale`` is the store's;
        ``ann_items``: the catalogue size from which search is approximate (module docstring);
        ``stamps``: the users' stamps, read before ``ratings`` (``unchanged``). The large arrays
        come from the folder's engine cache (``engine_cache``), built there by the first process."""
        return cls(version, path, trained_through, load_model(path), load_items(path), ratings, scale=scale,
                   new_items=new_items, ann_items=ann_items, cache=cache_folder(path), stamps=stamps)  # fmt: skip

    # --- requests ---------------------------------------------------------------------------------
    def for_user(self, user: str, items: list[str], values: np.ndarray, written_at: np.ndarray, n: int) -> Answer:
        """The list of ``user`` whose stored ratings are (items, values, written_at). A user with
        nothing in the store (never seen, or forgotten) gets the average-taste list, whatever the
        model learned for them."""
        return self.answer([self.place(user, items, values, written_at, n)])[0]

    def for_answers(self, idx: np.ndarray, vals: np.ndarray, n: int) -> Answer:
        """A new (or changed) user's list from rated item indices (sorted) and their ratings."""
        return self.answer([self.place_answers(idx, vals, n)])[0]

    def place_answers(self, idx: np.ndarray, vals: np.ndarray, n: int) -> Place:
        """A new user's onboarding answers (item indices sorted, ratings), to be folded in."""
        return Place("fold-in", -1, idx, vals, n)

    def stamp(self, user: str) -> int | None:
        """The stamp ``user`` had in the store when their precomputed list was made (None: not
        one to check by stamp: unknown to the model, or rated after its training). The stored
        stamp still equal to it: the user's ratings are as captured (``unchanged``)."""
        row = self.user_index.get(user)
        stamp = -1 if row is None else int(self.stamps[row])
        return None if stamp < 0 else stamp

    def unchanged(self, user: str, n: int) -> Place:
        """A user whose stored stamp equals ``stamp(user)``: their precomputed list, as ``place``
        would find it from their ratings, without reading them."""
        return Place("precomputed", self.user_index[user], np.zeros(0, np.int64), np.zeros(0), n)

    def place(self, user: str, items: list[str], values: np.ndarray, written_at: np.ndarray, n: int) -> Place:
        """How to answer a stored user: their precomputed list, their trained representation
        scored afresh (their stored ratings changed since the load), or a fold-in. Ratings off
        the store's scale are not used, and one written after the training does not count."""
        idx, vals, usable = self._known(items, values)
        row = self.user_index.get(user) if len(items) else None
        if row is not None and not (written_at[usable] > self.trained_through).any():
            lo, hi = self.seen[0][row], self.seen[0][row + 1]
            if np.array_equal(idx, self.seen[1][lo:hi]) and np.array_equal(vals.astype(np.float32), self.seen[2][lo:hi]):
                return Place("precomputed", row, idx, vals, n)  # nothing rated, changed or deleted since the load
            return Place("model", row, idx, vals, n)
        return self.place_answers(idx, vals, n)

    @torch.no_grad()
    def answer(self, places: list[Place]) -> list[Answer]:
        """Answer placed requests (``place``, ``place_answers``): the cheap ones one by one, those
        to score together."""
        out: list[Answer | None] = [None] * len(places)
        scored: dict[str, list[int]] = {"model": [], "fold-in": []}
        for k, (how, row, idx, vals, n) in enumerate(places):
            if how == "precomputed":
                out[k] = self._precomputed(row, n)
            elif how == "fold-in" and not len(idx):
                items, scores, p = self.average
                out[k] = Answer("average-taste", items[:n], scores[:n], np.full(min(n, len(items)), FALLBACK_REASON, dtype=object), None if p is None else p[:n])
            elif how == "fold-in" and not self.foldable:
                out[k] = self._unseen_average(idx, vals, n)
            else:
                scored[how].append(k)
        parts = []
        if scored["model"]:
            parts.append((scored["model"], self.model.user_reprs(torch.tensor([places[k].row for k in scored["model"]]))))
        # together when each user's fold-in is their own (``fold_in_per_user``), else one by one
        groups = [scored["fold-in"]] if self.model.fold_in_per_user else [[k] for k in scored["fold-in"]]
        for ks in filter(None, groups):
            I, R = padded(*_flat([places[k].items for k in ks], [places[k].ratings for k in ks]))
            parts.append((ks, self.model.fold_in(I, R, self.prior)))
        for ks, reprs in parts:
            for k, answer in zip(ks, self._ranked(reprs, [places[k] for k in ks])):
                out[k] = answer
        return out  # type: ignore[return-value]

    def answers_index(self, items: list[str]) -> tuple[np.ndarray, list[int]]:
        """(item indices, positions of the items the model does not know) of onboarding answers."""
        idx = np.array([self.item_index.get(i, -1) for i in items], dtype=np.int64)
        return idx, np.flatnonzero(idx < 0).tolist()

    def similar(self, item: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, cosine similarities) of the ``k`` items whose factors point most like
        ``item``'s (``interpret.similar``'s rule, on the vectors prepared at load); a kind with
        its own item similarities (NEIGHBOURS) by those."""
        idx = self.item_index[item]
        if supports(self.model, NEIGHBOURS):
            return nearest_of(self.model.item_similarity(torch.tensor(idx), torch.arange(len(self.model.items))).double().numpy(), idx, k)
        require(self.model, FACTORS)
        return nearest(self.unit, idx, k)

    # --- the shared path --------------------------------------------------------------------------
    def _precomputed(self, row: int, n: int) -> Answer:
        """A known user's list as prepared at load: slices of arrays."""
        top = self.top_items[row, :n]
        k = int((top >= 0).sum())
        text = self._because(self.top_because[row, :k], top[:k])
        p = None if self.top_p_love is None else self.top_p_love[row, :k]
        return Answer("model", top[:k], self.top_scores[row, :k], text, p)

    def _because(self, because: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Reasons for ``items`` from the liked items behind each (``explain_items``'s (k, 2)), or
        the item's own (``reason_biases``) where no liked item explains it."""
        return with_item_reasons(because_text(because, self.names.__getitem__), items, self.item_biases)

    @torch.no_grad()
    def _precompute(self, ratings: pd.DataFrame, stamps: dict[str, int] | None) -> dict[str, np.ndarray]:
        """The large arrays (shared through the cache): what each known user has in the store
        (with their stamp and their latest rating's time), unit item vectors, and every known
        user's top-K without what they have in the store, with the items behind each reason and
        P(love): what ``recommend`` computes for them, done once."""
        indptr, seen, values = _seen_at_load(self, ratings)
        stamp, latest = _stamps_at_load(self, ratings, stamps)
        unit = unit_factors(self.model)  # (n_items, 0) for kinds without factors: no reasons
        users = np.arange(len(self.model.users))
        top, scores = self._top(users, self.top_k, (indptr, seen))
        because = explain_items(self.model, top, (indptr, seen, values), users, vectors=unit)
        out = {"seen_indptr": indptr, "seen_items": seen, "seen_ratings": values, "unit": unit.detach().numpy(),
               "user_stamp": stamp, "user_latest": latest,
               "top_items": top, "top_scores": scores, "top_because": because}  # fmt: skip
        if supports(self.model, PROBA):
            chunks = [_p_love(self.model, rows, None, top[rows]) for rows in np.array_split(users, max(1, len(users) // 4096))]
            out["top_p_love"] = np.concatenate(chunks) if chunks else np.zeros((0, self.top_k))
        return out

    def _adopt(self, arrays: dict[str, np.ndarray]) -> None:
        """Serve from ``_precompute``'s arrays (built here, or mapped read-only from the cache)."""
        self.seen = (arrays["seen_indptr"], arrays["seen_items"], arrays["seen_ratings"])  # CSR over model users
        # a stamp to check only for a user with nothing rated after the training (this version's)
        self.stamps = np.where(arrays["user_latest"] <= self.trained_through, arrays["user_stamp"], -1)
        with warnings.catch_warnings():  # a mapped array is read-only, and nothing writes to it
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            self.unit = torch.from_numpy(arrays["unit"])
        self.top_items, self.top_scores, self.top_because = arrays["top_items"], arrays["top_scores"], arrays["top_because"]
        self.top_p_love = arrays.get("top_p_love")

    def _top(self, users: np.ndarray, n: int, seen: tuple[np.ndarray, np.ndarray] | None,
             reprs: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """``top_n`` over the catalogue, through the approximate index when there is one."""
        if self.index is not None:
            return self.index.top_n(self.model, users, n, seen, reprs)
        return top_n(self.model, users, n, seen=seen, reprs=reprs, scorer=self.scorer)

    def _known(self, items: list[str], values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored ratings of items the model knows, as (indices, ratings) sorted by index,
        and which stored ratings are usable (on the store's scale)."""
        idx = np.fromiter((self.item_index.get(i, -1) for i in items), np.int64, len(items))
        values = np.asarray(values, dtype=np.float64)
        usable = np.isfinite(values) if self.scale is None else self.scale.ok(values)
        keep = (idx >= 0) & usable
        order = np.argsort(idx[keep], kind="stable")
        return idx[keep][order], values[keep][order], usable

    def _ranked(self, reprs: Tensor, places: list[Place]) -> list[Answer]:
        """Score user representations (U, D) against the catalogue, each user's rated items
        masked, with reasons and P(love): one ``top_n`` and one ``explain_items`` for all."""
        idxs, valss = [p.items for p in places], [p.ratings for p in places]
        indptr = np.r_[0, np.cumsum([len(i) for i in idxs])]
        flat, flat_vals = np.concatenate(idxs), np.concatenate(valss).astype(np.float32)
        users = np.arange(len(places))
        top, scores = self._top(users, min(max(p.n for p in places), self.top_k), (indptr, flat), reprs)
        because = explain_items(self.model, top, (indptr, flat, flat_vals), users, vectors=self.unit)
        p_love = _p_love(self.model, users, reprs, np.maximum(top, 0)) if supports(self.model, PROBA) else None
        out = []
        for u, (how, _, _, _, n) in enumerate(places):
            keep = np.flatnonzero(top[u] >= 0)[:n]  # short lists end in -1 padding
            text = self._because(because[u, keep], top[u, keep])
            out.append(Answer(how, top[u, keep], scores[u, keep], text, None if p_love is None else p_love[u, keep]))
        return out

    def _unseen_average(self, idx: np.ndarray, vals: np.ndarray, n: int) -> Answer:
        """For a kind that cannot place new users: the population's list without what the user
        rated, with reasons from their liked items nearest each item (``explain_items``)."""
        items, scores, _ = self.average
        keep = ~np.isin(items, idx)
        top, scores = items[keep][:n], scores[keep][:n]
        history = (np.array([0, len(idx)]), idx, vals.astype(np.float32))
        because = explain_items(self.model, top[None], history, np.zeros(1, dtype=np.int64), vectors=self.unit)
        return Answer("average-taste", top, scores, self._because(because.reshape(-1, 2), top))

    @torch.no_grad()
    def _average_taste(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The fallback list: the average-taste user's top-K (the prior's centre), or for a kind
        that does not fold in, the items by their mean score over the trained users."""
        if self.prior is not None:
            reprs = self.prior.mean.unsqueeze(0)
            top, scores = self._top(np.array([-1]), self.top_k, None, reprs)
            keep = top[0] >= 0
            p = _p_love(self.model, np.array([-1]), reprs, top[:, keep])[0] if supports(self.model, PROBA) else None
            return top[0][keep], scores[0][keep], p
        users = torch.arange(len(self.model.users))
        mean = sum(self.model.score_all_items(c).double().sum(0) for c in users.split(1024)) / max(1, len(users))
        order = torch.sort(-mean, stable=True).indices[: self.top_k]
        return order.numpy(), mean[order].float().numpy(), None


def _flat(idxs: list[np.ndarray], valss: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Several users' (sorted item indices, ratings) as ``padded``'s (codes, items, values, rows)."""
    codes = np.repeat(np.arange(len(idxs)), [len(i) for i in idxs])
    return codes, np.concatenate(idxs), np.concatenate(valss), len(idxs)


def _with_new_items(model: CollabModel, ratings: pd.DataFrame, k: int) -> CollabModel:
    """``model`` grown by the items of the store it does not know that have ``k`` ratings by users
    it knows, placed by item fold-in (``with_items``; the prior calibrated on the store's ratings);
    ``model`` itself when k is 0 or no item qualifies."""
    if k <= 0 or not len(ratings):
        return model
    frame = ratings[["user", "item", "rating"]]
    fits = model.items.fits(frame["item"])  # a text id cannot join a vocabulary of integers
    if not fits.all():
        log.warning("%d stored rating(s) of items whose ids cannot join version's integer ids (%s...) "
                    "are not used for new items", int((~fits).sum()), frame["item"][~fits].iloc[0])  # fmt: skip
    return model.with_items(Ratings(frame[fits]), k)


def _index(engine: Engine, ratings: pd.DataFrame, ann_items: int) -> ItemIndex | None:
    """An approximate inner-product index when the catalogue has ``ann_items`` items or more and
    the kind ranks by an inner product (``recommend.ann``); None (exact search) otherwise."""
    if len(engine.model.items) < ann_items or not indexable(engine.scorer):
        return None
    index = ItemIndex(engine.scorer, _calibration_users(engine, ratings))
    log.info("%d items: approximate search (%s)", len(engine.model.items), describe(index))
    return index


@torch.no_grad()
def _calibration_users(engine: Engine, ratings: pd.DataFrame) -> Tensor:
    """User representations like those the engine searches with: a sample of the trained users
    and, for kinds that fold in, the same users folded in from their stored ratings (a folded-in
    user sits nearer the prior's centre, and needs more probes for the same recall)."""
    model = engine.model
    rows = np.sort(np.random.default_rng(0).permutation(len(model.users))[: CALIBRATION_USERS // 2])
    reprs = [model.user_reprs(torch.from_numpy(rows))]
    user, item = ratings["user"].map(engine.user_index), ratings["item"].map(engine.item_index)
    pick = (user.isin(rows) & item.notna()).to_numpy()
    if engine.prior is not None and pick.any():
        answered, codes = np.unique(user[pick].to_numpy(np.int64), return_inverse=True)
        items, values = item[pick].to_numpy(np.int64), ratings["rating"].to_numpy(np.float64)[pick]
        reprs.append(model.fold_in(*padded(codes, items, values, len(answered)), engine.prior))
    return torch.cat(reprs).float()


def _unknown_counts(item_text: np.ndarray, ratings: pd.DataFrame) -> dict[str, int]:
    """{item: its number of ratings} of the store's items the engine does not hold (yet)."""
    items = ratings["item"].astype(str)
    return items[~items.isin(item_text)].value_counts().to_dict()


def _names(model: CollabModel, items: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(every item's display name: its title, else its id; its title or None, None without any
    titles at all)."""
    ids = pd.Series(model.items.ids, dtype=object).astype(str).to_numpy(dtype=object)
    if items is None or "title" not in items.columns:
        return ids, None
    table = items["title"][~items.index.duplicated()]
    titles = table.reindex(model.items.ids).to_numpy(dtype=object)
    missing = pd.isna(titles)
    return np.where(missing, ids, titles).astype(object), np.where(missing, None, titles).astype(object)


def _store_ratings(frame: pd.DataFrame) -> Ratings | None:
    """The store's ratings as Ratings (the prior's calibration, onboarding's popularity)."""
    return Ratings(frame[["user", "item", "rating"]]) if len(frame) else None


def _questions(model: CollabModel, ratings: Ratings | None, prior: UserPrior | None) -> list[Any]:
    """The first N_QUESTIONS onboarding questions (each skipped in turn: the next most informative)."""
    quiz = Questionnaire(model, ratings, prior)
    out = []
    for _ in range(min(N_QUESTIONS, len(model.items))):
        item = quiz.next_item()
        if item is None:
            break
        out.append(item)
        quiz.answer(item, None)
    return out


def _stamps_at_load(engine: Engine, ratings: pd.DataFrame, stamps: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(each model user's stamp, -1: none; the time of their latest stored rating, inf: none).
    Stamps come from the store, read before ``ratings``; a user without ratings is never checked
    by stamp (``_adopt``): they get the average-taste list, not their precomputed one."""
    n_users = len(engine.model.users)
    latest = np.full(n_users, np.inf)
    if not stamps or not len(ratings):
        return np.full(n_users, -1, dtype=np.int64), latest
    u = ratings["user"].map(engine.user_index)
    known = u.notna().to_numpy()
    rows = u[known].to_numpy(dtype=np.int64)
    found = np.full(n_users, -np.inf)
    np.maximum.at(found, rows, ratings["written_at"].to_numpy(dtype=np.float64)[known])
    latest[rows] = found[rows]
    stamp = np.fromiter((stamps.get(str(t), -1) for t in engine.model.users.ids), np.int64, n_users)
    return stamp, latest


def _seen_at_load(engine: Engine, ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR over the model's users of the items (known to the model) each has in the store, and
    their ratings (float32, as recommend's history holds them)."""
    n_users = len(engine.model.users)
    if not len(ratings):
        return np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    u = ratings["user"].map(engine.user_index).to_numpy(dtype=np.float64)
    i = ratings["item"].map(engine.item_index).to_numpy(dtype=np.float64)
    keep = ~(np.isnan(u) | np.isnan(i))
    u, i = u[keep].astype(np.int64), i[keep].astype(np.int64)
    r = ratings["rating"].to_numpy(dtype=np.float32)[keep]
    order = np.lexsort((i, u))
    return np.r_[0, np.cumsum(np.bincount(u, minlength=n_users))], i[order], r[order]
