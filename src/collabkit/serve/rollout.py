"""Retraining with a measured gate: a candidate goes live only if it is not worse than the live model.

``retrain`` holds out the most recent ratings (by timestamp), trains a candidate on the rest
(``_train``), scores candidate and live model on the same held-out ratings (RMSE) and promotes
the candidate when  rmse_candidate <= rmse_live + tolerance. Otherwise it stays a candidate with
both numbers recorded. The live model may have been trained on some of the held-out ratings,
which flatters it: the gate errs towards keeping what works. The candidate that goes live is the
one that was measured (trained without the held-out part); users who rated after its training
are folded in at request time, so their recent ratings still count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from collabkit.serve import store

DEFAULT_SPEC = "dot-bias(n_factors=50)"


def _train(spec: str, ratings: Any) -> Any:
    """The one place the service trains a model: the library's builder."""
    from collabkit.train.build import build_model

    return build_model(spec, ratings)[0]


def holdout(frame: pd.DataFrame, share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(older, most recent ``share``) of ratings ordered by timestamp then arrival."""
    if not 0 < share < 1:
        raise ValueError(f"holdout share must be between 0 and 1, got {share}")
    order = frame.sort_values(["timestamp", "written_at"], kind="stable")
    cut = len(order) - max(1, round(len(order) * share))
    return order.iloc[:cut], order.iloc[cut:]


def retrain(
    engine: Engine,
    out_dir: str | Path,
    spec: str = DEFAULT_SPEC,
    share: float = 0.1,
    tolerance: float = 0.01,
    train_fraction: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Train, score, gate; returns the record (version, rmse_candidate, rmse_live, promoted, ...).

    ``train_fraction`` < 1 trains on a random share of the training part (a deliberately weaker
    candidate, to check the gate).
    """
    from collabkit.checkpoint import load_model, save_model
    from collabkit.data.interactions import Ratings
    from collabkit.evaluate import evaluate_ratings

    with Session(engine) as session:
        frame = store.all_ratings(session)
        live = store.live_version(session)
        items = _items_table(session)
    if len(frame) < 20:
        raise ValueError(f"the store holds {len(frame)} ratings: too few to train and hold out")
    train, test = holdout(frame, share)
    if train_fraction < 1:
        rng = np.random.default_rng(seed)
        train = train[rng.random(len(train)) < train_fraction]
    cols = ["user", "item", "rating", "timestamp"]
    scale = (float(frame["rating"].min()), float(frame["rating"].max()))
    train_r = Ratings(train[cols].reset_index(drop=True), items=items, scale=scale, name="store")
    test_r = Ratings(test[cols].reset_index(drop=True), scale=scale, name="held-out")
    model = _train(spec, train_r)
    cand = evaluate_ratings(model, test_r)
    live_rmse = float(evaluate_ratings(load_model(live.path), test_r)["rmse"]) if live else None
    promote = live_rmse is None or cand["rmse"] <= live_rmse + tolerance
    metrics = {
        "rmse_candidate": float(cand["rmse"]), "rmse_live": live_rmse,  # None: nothing was live
        "live_version": live.id if live else None, "tolerance": tolerance,
        "n_train": len(train), "n_test": len(test), "holdout_share": share,
        "train_fraction": train_fraction, "promoted": bool(promote),
    }  # fmt: skip
    with Session(engine) as session:
        version = store.add_version(session, "", spec, metrics, float(train["written_at"].max()))
        folder = Path(out_dir).resolve() / f"v{version.id}"
        save_model(model, folder, items=items, extra={"spec": spec, "store_version": version.id})
        version.path = str(folder)
        session.commit()
        if promote:
            store.set_live(session, version.id)
        return {"version": version.id, "path": str(folder), **metrics}


def _items_table(session: Session) -> pd.DataFrame | None:
    rows = session.scalars(select(store.Item)).all()
    if not rows:
        return None
    table = pd.DataFrame(
        [r.meta or {} for r in rows], index=pd.Index([r.id for r in rows], name="item")
    )
    if "title" not in table.columns:
        table["title"] = [r.title for r in rows]
    return table


def register(engine: Engine, path: str | Path, spec: str = "") -> int:
    """Make the model folder ``path`` the live version (registering it first); returns its id.

    Its item metadata (items.json) goes into the store's items table. Every rating already in the
    store counts as seen by this model (``trained_through`` = now).
    """
    from collabkit.checkpoint import load_items

    folder = str(Path(path).resolve())
    with Session(engine) as session:
        known = [v for v in store.versions(session) if v.path == folder]
        version = known[-1] if known else store.add_version(session, folder, spec)
        items = load_items(folder)
        if items is not None:
            store.upsert_items(session, items)
        if version.status != "live":
            store.set_live(session, version.id)
        return version.id


def rollback(engine: Engine) -> int:
    """Make the previously live version live again; returns its id."""
    with Session(engine) as session:
        previous = store.previous_version(session)
        if previous is None:
            raise LookupError("no earlier live version to roll back to")
        return store.set_live(session, previous.id).id
