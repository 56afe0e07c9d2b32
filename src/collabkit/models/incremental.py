"""Learning from new ratings without a full retrain: new items placed by fold-in, and ``update``.

Both are built on each kind's own mathematics (``models.base``), reached through the protocol:

- ``add_items(model, ratings, min_ratings)`` (``model.with_items``): items the model does not
  know, once they have ``min_ratings`` ratings from users it knows, are placed by item fold-in (ITEM_FOLD_IN: the
  mirror of user fold-in, the users fixed; ``models.linear`` for the MAP solve) in a copy of the
  model whose item vocabulary is grown to hold them (``grown``: known ids keep their indices).
  ``recommend``, ``similar_items`` and the serving engine then treat them as any item.
- ``update(model, new, old)`` (``model.update``; UPDATE) makes a new model that has learned from
  the ``new`` ratings, warm-started from the model's weights:

    1. grow both vocabularies with the new ratings' unknown users and items;
    2. place the new rows by fold-in where the kind has it: new items from their ratings by known
       users, then new users from their ratings of placed items, then the items only new users
       rated; a kind without fold-in starts them as its constructor does. The priors are
       measured without scoring (``models.linear.spread_prior``): these rows are a start;
    3. refit the baseline predictor (the fallback for unknown ids) on old + new ratings;
    4. train ``epochs`` passes of the kind's own training (its recipe: batch size, weight decay;
       the peak learning rate ``lr_max``) from the current weights on **the mix**: every new
       rating plus ``replay`` times as many old ones, drawn uniformly without replacement (1: as
       many; all of them when there are fewer), so that the rows the new ratings move are fitted
       to old ratings too, not to the new ones alone.

  A new rating of a (user, item) pair the old ratings hold replaces it (a re-rating). An update
  with no new ratings trains nothing: the model's predictions are unchanged (the baseline refit
  on the same ratings gives the same offsets). The lineage, what the update was made from, is
  appended to ``meta["lineage"]``: the parent's fingerprint (sha256 of its tensors), the data
  added (counts, new users and items, its sha256 and description) and the mix.

The defaults (1 epoch, replay 1, a fifth of the kind's lr_max) were chosen on a validation
protocol that never sees the benchmark's test ratings (``bench/incremental.py --tune``: base =
the first 60%, 10% more added in daily chunks), on ML-100k and Epinions: across 16 recipes (1 or 3
epochs, replay 1 or 3, lr_max 2e-4 to 2e-3) the RMSE moved by at most 0.003 on the
following ratings and 0.009 on a set-aside tenth of the added ones, and fold-in alone
(``epochs=0``) was within 0.0015 of the best; these are the cheapest of the near-best. A higher
learning rate or more epochs move the known users and items away from where the full data put
them. What an update with nothing new does (the stated tolerance): no new ratings, no change
(predictions equal to 1e-6); as new ratings, a tenth of the ratings it was trained on (ML-100k
u1, dot-bias) moves its predictions of the held-out ratings by 0.020 RMSE and their RMSE by
+0.0003 (``tests/models/test_incremental.py`` bounds the move at KNOWN_DATA_MOVE).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models.capabilities import FOLD_IN, ITEM_FOLD_IN, RATINGS, supports
from collabkit.models.linear import UserPrior, padded, spread_prior

#: a ``models.base.CollabModel`` (this module sits below the contract, which calls it)
CollabModel = Any

#: passes over the mix an update trains by default
EPOCHS = 1
#: old ratings replayed per new rating
REPLAY = 1.0
#: an update's peak learning rate, as a share of the kind's own lr_max: Adam starts afresh, and
#: its first steps move every row they touch by about the learning rate, whatever the gradient
LR_SHARE = 0.2
#: a fold-in solve of new rows holds about this many numbers (rows x padded ratings x D, rows x D x D)
PLACE_CELLS = 1 << 22


@torch.no_grad()
def add_items(
    model: CollabModel, ratings: Ratings, min_ratings: int = 1, prior: UserPrior | None = None
) -> CollabModel:
    """A copy of ``model`` that also holds the items of ``ratings`` it does not know and that have
    at least ``min_ratings`` ratings by users it knows, each placed by item fold-in from those
    ratings (module docstring); the new items' indices follow the known ones. ``prior``:
    ``model.item_prior(training ratings)``, computed once and reused (by default measured here on
    ``ratings``). Returns ``model`` itself when no item qualifies. The kind must have ITEM_FOLD_IN
    (``model.with_items`` checks)."""
    if min_ratings < 1:
        raise ValueError(f"min_ratings must be at least 1, got {min_ratings}")
    f = ratings.frame
    u = model.users.lookup(f["user"], strict=False)
    unknown = (model.items.lookup(f["item"], strict=False) < 0) & (u >= 0)
    counts = f.loc[unknown, "item"].value_counts()
    eligible = counts.index[counts.to_numpy() >= min_ratings]
    if not len(eligible):
        return model
    grown = model.grown(model.users, model.items.extended(eligible))
    prior = prior or model.item_prior(ratings)
    n_old = len(model.items)
    _place(grown, "item", f[unknown], n_old, np.arange(len(model.users)), prior)
    return grown.eval()


def update(
    model: CollabModel,
    new: Ratings,
    old: Ratings | None = None,
    *,
    epochs: int = EPOCHS,
    replay: float = REPLAY,
    lr_max: float | None = None,
    seed: int = 0,
    console: Any = None,
    progress: bool = False,
) -> CollabModel:
    """A new model: ``model`` grown and trained on from its weights with the ``new`` ratings
    (module docstring). ``old``: the ratings it was trained on (default: read again from its
    records, ``recorded_ratings``); ``epochs`` passes over the mix of the new ratings and
    ``replay`` times as many old ones (drawn with ``seed``); ``lr_max``: default LR_SHARE of the
    kind's own. ``console``/``progress``: the epoch table, as ``fit``'s. ``model`` is left as it
    was. The kind must have UPDATE (``model.update`` checks)."""
    if epochs < 0 or not np.isfinite(replay) or replay < 0:
        raise ValueError(f"epochs and replay must be >= 0, got {epochs} and {replay}")
    t0 = time.perf_counter()
    old = recorded_ratings(model) if old is None else old
    fresh = _checked(model, new)
    users = model.users.extended(pd.unique(fresh["user"]))
    items = model.items.extended(pd.unique(fresh["item"]))
    kept = _without(old.frame[["user", "item", "rating"]], fresh, model.users, model.items, users, items)
    grown = model.grown(users, items)
    if len(users) > len(model.users) or len(items) > len(model.items):
        _place_new(model, grown, fresh)
    if supports(model, RATINGS):
        grown.set_baseline(Ratings(pd.concat([kept, fresh], ignore_index=True), scale=old.scale))
    rng = np.random.default_rng(seed)
    n_replay = min(len(kept), round(replay * len(fresh)))
    mix = pd.concat([fresh, kept.iloc[np.sort(rng.choice(len(kept), n_replay, replace=False))]], ignore_index=True)
    rows: list[dict[str, float]] = []
    lr_max = lr_max if lr_max is not None else LR_SHARE * grown.config.lr_max
    if len(fresh) and epochs:
        recipe = grown.config
        grown.config = recipe.updated(epochs=epochs, lr_max=lr_max)
        try:
            rows = grown._fit(Ratings(mix, scale=old.scale, name="update"), None, console, progress).rows
        finally:
            grown.config = recipe
    grown.eval()
    grown.meta["lineage"] = [*model.meta.get("lineage", []), {
        "parent": {"fingerprint": fingerprint(model), "kind": model.kind, "users": len(model.users), "items": len(model.items)},
        "added": {
            "ratings": len(fresh), "new_users": len(users) - len(model.users), "new_items": len(items) - len(model.items),
            "replaced": len(old.frame) - len(kept), "sha256": data_sha256(fresh), "origin": new.origin,
        },
        "mix": {"new": len(fresh), "replay": n_replay, "replay_ratio": replay, "old": len(kept)},
        "epochs": epochs if len(fresh) else 0, "lr_max": lr_max,
        "seconds": round(time.perf_counter() - t0, 3), "history": rows, "at": time.time(),
    }]  # fmt: skip
    return grown


def _place_new(model: CollabModel, grown: CollabModel, fresh: pd.DataFrame) -> None:
    """Fold in ``grown``'s new items and users (module docstring, step 2). The priors are measured
    on ``model``'s trained rows without scoring them (``models.linear.spread_prior``: centred on
    the mean row, uncalibrated): the rows are a start for the training that follows, and the
    average-taste search would cost more than that training on a large catalogue."""
    n_users, n_items = len(model.users), len(model.items)
    placed_users, placed_items = np.arange(n_users), np.arange(n_items)
    items_too = supports(model, ITEM_FOLD_IN) and len(grown.items) > n_items
    users_too = supports(model, FOLD_IN) and len(grown.users) > n_users
    item_prior = spread_prior(model, "item") if items_too else None
    if items_too:
        placed_items = np.r_[placed_items, _place(grown, "item", fresh, n_items, placed_users, item_prior)]
    if users_too:
        placed_users = np.r_[placed_users, _place(grown, "user", fresh, n_users, placed_items, spread_prior(model, "user"))]
    if items_too and users_too:  # the items only new users rated
        _place(grown, "item", fresh, n_items, placed_users, item_prior, skip=placed_items)


@torch.no_grad()
def _place(grown: CollabModel, side: str, frame: pd.DataFrame, n_old: int, raters: np.ndarray,
           prior: UserPrior, skip: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Fold in the rows of ``side`` numbered from ``n_old`` on (the new ones; not those in
    ``skip``) from their ratings in ``frame`` by the other side's ``raters`` (indices already
    placed), and write them into ``grown``; returns the indices placed. Rows are solved in groups
    of similar numbers of ratings (1, 2, 3-4, 5-8, ...): a solve pads every row to its group's
    longest, so one row with a thousand ratings does not make all of them that long; and a solve
    takes at most PLACE_CELLS numbers of padded ratings or of the rows' D x D systems."""
    own, other = (grown.items, grown.users) if side == "item" else (grown.users, grown.items)
    o = own.lookup(frame[side], strict=False)
    t = other.lookup(frame["user" if side == "item" else "item"], strict=False)
    keep = (o >= n_old) & np.isin(t, raters)
    if skip is not None:
        keep &= ~np.isin(o, skip)
    rows, codes = np.unique(o[keep], return_inverse=True)
    t, r = t[keep], frame["rating"].to_numpy()[keep]
    size = np.ceil(np.log2(np.bincount(codes, minlength=len(rows)))).astype(np.int64)  # the group of each row
    solve = grown.fold_in_items if side == "item" else grown.fold_in
    width = max(1, len(prior.mean))
    for group in np.unique(size):
        longest = 2 ** int(group)
        step = max(1, min(PLACE_CELLS // (longest * width), PLACE_CELLS // (width * width)))
        for members in np.array_split(np.flatnonzero(size == group), -(-int((size == group).sum()) // step)):
            sel = np.isin(codes, members)  # members: positions in rows
            others, values = padded(np.searchsorted(members, codes[sel]), t[sel], r[sel], len(members))
            grown.set_reprs(side, torch.from_numpy(rows[members]), solve(others, values, prior))
    return rows


def off_scale(model: CollabModel, values: np.ndarray) -> str | None:
    """Why ``values`` (ratings given to ``model``) are off its scale, naming the first, or None."""
    scale = model.meta.get("scale") or ()
    if len(scale) != 2 or not len(values):
        return None
    off = (values < scale[0]) | (values > scale[1])
    if not off.any():
        return None
    first = int(np.flatnonzero(off)[0])
    return f"{int(off.sum())} rating(s) are off the model's scale {scale[0]:g}-{scale[1]:g} (the first: {values[first]:g}, row {first})"


def _checked(model: CollabModel, new: Ratings) -> pd.DataFrame:
    """The new ratings (user, item, rating), refused when a value is off the model's scale or a
    (user, item) pair is repeated: nothing is dropped or reinterpreted silently."""
    f = new.frame[["user", "item", "rating"]]
    values = f["rating"].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{new.name}: {int((~np.isfinite(values)).sum())} rating(s) are not finite numbers")
    problem = off_scale(model, values)
    if problem is not None:
        raise ValueError(f"{new.name}: {problem}")
    if f.duplicated(["user", "item"]).any():
        raise ValueError(f"{new.name}: a (user, item) pair is rated twice; keep one rating a pair")
    return f.reset_index(drop=True)


def _without(old: pd.DataFrame, new: pd.DataFrame, users: Vocab, items: Vocab, grown_users: Vocab, grown_items: Vocab) -> pd.DataFrame:
    """``old`` (the ratings the model, of vocabularies ``users`` and ``items``, was trained on)
    without the (user, item) pairs ``new`` rates again; ValueError when ``old`` holds ids the
    model does not know (they are not its training ratings)."""
    u, i = users.lookup(old["user"], strict=False), items.lookup(old["item"], strict=False)
    if (u < 0).any() or (i < 0).any():
        raise ValueError(f"the old ratings hold {int((u < 0).sum() + (i < 0).sum())} id(s) the model does not know: "
                         "they are not the ratings it was trained on")  # fmt: skip
    if not len(new):
        return old.reset_index(drop=True)
    n = len(grown_items)
    again = np.isin(u * n + i, grown_users.lookup(new["user"]) * n + grown_items.lookup(new["item"]))
    return old[~again].reset_index(drop=True)


def fingerprint(model: CollabModel) -> str:
    """sha256 of the model's tensors (names, dtypes and values, in name order): which weights an
    update started from."""
    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def data_sha256(frame: pd.DataFrame) -> str:
    """sha256 of a frame's user, item and rating columns, row by row."""
    hashed = pd.util.hash_pandas_object(frame[["user", "item", "rating"]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def recorded_ratings(model: CollabModel) -> Ratings:
    """The ratings ``model`` was trained on, read again from its records: the training part of
    ``meta["data"]`` (``data.source``) and the data each update in ``meta["lineage"]`` added.
    ValueError when a part is not recorded (trained on a DataFrame): pass them instead."""
    from collabkit.data.source import DataSource

    record = model.meta.get("data")
    if not record:
        raise ValueError("the model does not record the ratings it was trained on (trained on a DataFrame?): "
                         "pass them (old=...) for the replay sample and the baseline")  # fmt: skip
    source = DataSource.from_json(record)
    train, _ = source.split_data(source.load())
    parts = [train.frame[["user", "item", "rating"]]]
    for step in model.meta.get("lineage", []):
        origin = step["added"].get("origin")
        if step["added"]["ratings"] and not origin:
            raise ValueError("an update of this model added ratings that are not recorded: pass old=...")
        if origin:
            added = DataSource.from_json(origin).load().frame[["user", "item", "rating"]]
            before = pd.concat(parts, ignore_index=True)
            users, items = Vocab(before["user"], "user"), Vocab(before["item"], "item")
            grown_users, grown_items = users.extended(added["user"]), items.extended(added["item"])
            parts = [_without(before, added, users, items, grown_users, grown_items), added]
    return train.with_frame(pd.concat(parts, ignore_index=True), name=f"{train.name} (as trained)")
