"""Rollout: a gate that compares candidate and live model on ratings neither has trained on, and
promotion of only what can serve.

The gate (``retrain``) trains a candidate from the store's ratings and compares its RMSE with the
live model's on ratings **neither model was trained on** (``plan``):

- ``after-cutoff``: at least ``min_test`` ratings were written after the live version's cut-off
  (``trained_through``). The candidate trains on the ratings written up to the cut-off (what the
  live model could know); both are scored on the ratings written after it.
- ``same-split``: otherwise the most recent ``share`` of the ratings is held out and **both**
  recipes train on the rest: the candidate's spec and the live version's own (its kind and
  config, read from its folder). The live recipe's refit stands in for the live model, which may
  have trained on the held-out ratings (``make serve`` trains it on all of them).
- ``undecided``: neither is possible (too few ratings; the live recipe cannot be retrained, or is
  a ranking model RMSE cannot judge). The candidate is kept, not promoted, with the reason.

``incremental=True`` makes the candidate an update of the live model (``CollabModel.update``:
warm-started from its weights, new users and items placed by fold-in, a few epochs on the new
ratings mixed with a replay of the old) instead of a model trained from scratch, and judges it the
same way (``plan_update``): of the ratings written after the live version's cut-off, the most
recent ``share`` (at least ``min_test``) are held out and score both the candidate and the live
model, neither of which has seen them; the candidate is updated with the older ones. Ratings of
users or items the live model does not know count as new wherever they fall.

The candidate is promoted when  rmse_candidate <= rmse_live + tolerance, and only if it then loads
and answers a smoke request (``promote``). A version that does not load or answer never becomes
live: the live version stays, and the reason is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from collabkit.serve import store
from collabkit.serve.validation import UNRECORDED, Scale

if TYPE_CHECKING:
    from collabkit.models.base import CollabModel

DEFAULT_SPEC = "dot-bias(n_factors=50)"
MIN_TEST = 50  # ratings the gate needs to score on: fewer and it cannot decide
SMOKE_N = 5  # list length of the smoke request


class NotServable(ValueError):
    """A model version that does not load, or loads but does not answer a recommendation."""


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


# --- the gate's plan: which ratings neither model has seen ------------------------------------
@dataclass
class Plan:
    """How the gate will measure: ``how`` (first, after-cutoff, same-split, undecided), the
    training and test parts, whether the live recipe is retrained, and why when undecided."""

    how: str
    train: pd.DataFrame
    test: pd.DataFrame
    refit_live: bool = False
    reason: str = ""


def plan(frame: pd.DataFrame, live_cutoff: float | None, refit_problem: str | None,
         share: float, min_test: int = MIN_TEST) -> Plan:  # fmt: skip
    """The gate's design for these ratings (columns timestamp, written_at, ...).

    ``live_cutoff`` is the live version's ``trained_through`` (None: nothing is live);
    ``refit_problem`` says why the live recipe cannot be retrained (None: it can).
    """
    older, recent = holdout(frame, share) if len(frame) >= 2 else (frame, frame.iloc[:0])
    if live_cutoff is None:
        return Plan("first", older, recent)
    fresh = frame["written_at"] > live_cutoff
    if fresh.sum() >= min_test and (~fresh).any():
        return Plan("after-cutoff", frame[~fresh], frame[fresh])
    why_not_fresh = (
        f"only {int(fresh.sum())} rating(s) were written after the live version's cut-off "
        f"(the gate needs {min_test})"
    )
    if refit_problem is not None:
        return Plan("undecided", older, recent, reason=f"{why_not_fresh}, and {refit_problem}")
    if len(recent) < min_test:
        return Plan("undecided", older, recent, reason=(
            f"{why_not_fresh}, and holding out {share:.0%} of the {len(frame)} ratings leaves "
            f"{len(recent)} to score on"))  # fmt: skip
    return Plan("same-split", older, recent, refit_live=True)


def plan_update(frame: pd.DataFrame, live: CollabModel, cutoff: float, share: float,
                min_test: int = MIN_TEST) -> tuple[Plan, pd.DataFrame]:  # fmt: skip
    """(the gate's plan for an update of ``live``, the old ratings it replays) (module docstring):
    the plan's ``train`` holds the new ratings the update learns from."""
    known = (live.users.lookup(frame["user"], strict=False) >= 0) & (live.items.lookup(frame["item"], strict=False) >= 0)
    fresh = (frame["written_at"] > cutoff).to_numpy() | ~known
    old, new = frame[~fresh], frame[fresh]
    n_test = max(min_test, round(len(new) * share))
    if n_test >= len(new):
        reason = (f"{len(new)} rating(s) are new to the live version: the gate needs {min_test} to score "
                  "on and at least one to update with")  # fmt: skip
        return Plan("undecided", new, new.iloc[:0], reason=reason), old
    learn, test = holdout(new, n_test / len(new))
    return Plan("incremental", learn, test), old


def refit_problem(model: CollabModel) -> str | None:
    """Why the live model's recipe cannot be retrained and judged by RMSE, or None."""
    from collabkit.models.base import RATINGS, registry, supports

    if not supports(model, RATINGS):
        return f"the live model ({model.kind}) ranks items: an RMSE gate cannot judge it"
    if model.kind not in registry() or model.kind == "ensemble":
        return f"the live model's recipe ({model.kind}) cannot be retrained from its folder"
    return None


def _refit(model: CollabModel, train: Any) -> CollabModel:
    """The live version's recipe (kind and config, training recipe included) trained on ``train``."""
    from collabkit.train.build import build_model
    from collabkit.train.spec import ModelSpec

    config = dict(model.config.to_json())
    return build_model(ModelSpec(model.kind, config, model.kind), train)[0]


def retrain(
    engine: Engine,
    out_dir: str | Path,
    spec: str = DEFAULT_SPEC,
    share: float = 0.1,
    tolerance: float = 0.01,
    train_fraction: float = 1.0,
    seed: int = 0,
    min_test: int = MIN_TEST,
    incremental: bool = False,
) -> dict[str, Any]:
    """Train, score, gate (module docstring); returns the record (version, rmse_candidate,
    rmse_live, gate, decided, promoted, reason, ...), which is also the version's metrics.

    ``train_fraction`` < 1 trains the candidate on a random share of the training part (a
    deliberately weaker candidate, to check the gate). ``incremental``: the candidate is the live
    model updated (``spec`` is not used); ValueError when nothing is live or its kind cannot update.
    """
    from collabkit.checkpoint import load_model, save_model
    from collabkit.data.interactions import Ratings
    from collabkit.evaluate import evaluate_ratings
    from collabkit.models.base import UPDATE, require

    with Session(engine) as session:
        frame = store.all_ratings(session)
        live = store.live_version(session)
        items = _items_table(session)
        scale = store.scale(session)
    if len(frame) < 20:
        raise ValueError(f"the store holds {len(frame)} usable ratings: too few to train and hold out")
    live_model = load_model(live.path) if live is not None else None
    bounds = _bounds(scale, frame)
    as_ratings = lambda part, name: Ratings(
        part[["user", "item", "rating", "timestamp"]].reset_index(drop=True),
        items=items if name == "store" else None, scale=bounds, name=name,
    )  # fmt: skip
    if incremental:
        if live_model is None:
            raise ValueError("an incremental retrain updates the live model, and no version is live yet")
        require(live_model, UPDATE)
        p, old = plan_update(frame, live_model, live.trained_through, share, min_test)
        train = p.train
        model = live_model.update(as_ratings(train, "new"), as_ratings(old, "store"), seed=seed)
        model.meta["lineage"][-1]["parent"]["store_version"] = live.id
        spec = f"update of version {live.id}"
        through = float(pd.concat([train, old])["written_at"].max())
    else:
        problem = refit_problem(live_model) if live_model is not None else None
        p = plan(frame, live.trained_through if live else None, problem, share, min_test)
        train = p.train
        if train_fraction < 1:
            rng = np.random.default_rng(seed)
            train = train[rng.random(len(train)) < train_fraction]
        model = _train(spec, as_ratings(train, "store"))
        through = float(p.train["written_at"].max())
    cand = live_rmse = None
    if len(p.test):
        test = as_ratings(p.test, "held-out")
        cand = float(evaluate_ratings(model, test)["rmse"])
        if p.how in ("after-cutoff", "incremental"):
            live_rmse = float(evaluate_ratings(live_model, test)["rmse"])
        elif p.refit_live:
            live_rmse = float(evaluate_ratings(_refit(live_model, as_ratings(p.train, "store")), test)["rmse"])
    decided = p.how in ("first", "after-cutoff", "same-split", "incremental")
    promote = decided and (live_rmse is None or cand is None or cand <= live_rmse + tolerance)
    metrics = {
        "gate": p.how, "decided": decided, "reason": p.reason,
        "rmse_candidate": cand, "rmse_live": live_rmse,  # None: nothing was live (or undecided)
        "live_refit": p.refit_live, "live_version": live.id if live else None,
        "tolerance": tolerance, "n_train": len(train), "n_test": len(p.test), "holdout_share": share,
        "train_fraction": train_fraction, "incremental": incremental, "promoted": False,
    }  # fmt: skip
    with Session(engine, expire_on_commit=False) as session:
        version = store.add_version(session, "", spec, metrics, through)
        folder = Path(out_dir).resolve() / f"v{version.id}"
        save_model(model, folder, items=items, extra={"spec": spec, "store_version": version.id})
        version.path = str(folder)
        session.commit()
    if promote:
        try:
            promote_version(engine, version.id)
            metrics["promoted"] = True
        except NotServable as e:
            metrics["reason"] = str(e)
    elif decided:
        metrics["reason"] = (
            f"RMSE {cand:.4f} is worse than the live model's {live_rmse:.4f} + tolerance {tolerance}"
        )
    with Session(engine) as session:
        session.get(store.ModelVersion, version.id).metrics = metrics
        session.commit()
    return {"version": version.id, "path": str(folder), **metrics}


def _bounds(scale: Scale, frame: pd.DataFrame) -> tuple[float, float]:
    """The rating scale to train with: the store's, else the data's range."""
    if scale != UNRECORDED and scale.kind == "ratings" and scale.high is not None:
        return (scale.low, scale.high)
    return (float(frame["rating"].min()), float(frame["rating"].max()))


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


# --- promotion: only what loads and answers ---------------------------------------------------
def smoke(served: Any) -> None:
    """Ask ``served`` (an ``engine.Engine``) for a known user's list and for a newcomer's (the
    fallback): NotServable unless both come back non-empty with finite scores."""
    indptr, items, values = served.seen  # the first known user, with what they have in the store
    first = served.item_text[items[indptr[0] : indptr[1]]].tolist(), values[indptr[0] : indptr[1]]
    asks = [(str(served.model.users.ids[0]), *first), ("\x00smoke", [], np.zeros(0))]
    for user, rated, ratings in asks:
        try:
            answer = served.for_user(user, rated, ratings, np.zeros(len(rated)), SMOKE_N)
        except Exception as e:  # noqa: BLE001 -- whatever fails, the version cannot serve
            raise NotServable(f"model version {served.version} does not answer: {_why(e)}") from None
        if not len(answer.items) or not np.isfinite(np.asarray(answer.scores, dtype=np.float64)).all():
            raise NotServable(f"model version {served.version} answers an empty or non-finite list")


def checked_load(load: Any, version: store.ModelVersion) -> Any:
    """``load(version)`` (an Engine), then ``smoke`` it: NotServable naming why, else the Engine."""
    try:
        served = load(version)
    except Exception as e:  # noqa: BLE001 -- a folder that does not load, whatever the cause
        raise NotServable(f"model version {version.id} does not load: {_why(e)}") from None
    smoke(served)
    return served


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]


def load_served(engine: Engine, version: store.ModelVersion, **options: Any) -> Any:
    """A version loaded as the server loads it: its ``engine.Engine`` (``options``: new_items,
    ann_items), on the store's users' stamps and then its ratings (``Engine.stamp``)."""
    from collabkit.serve.engine import Engine as Served

    with Session(engine) as session:
        stamps = store.user_stamps(session)  # first: never newer than the ratings read next
        ratings, scale = store.all_ratings(session), store.scale(session)
    return Served.load(version.id, version.path, version.trained_through, ratings, scale, stamps=stamps, **options)


def promote_version(engine: Engine, version_id: int, retire_as: str = "retired") -> store.ModelVersion:
    """Load ``version_id`` and answer a smoke request, then make it live (the CLI's and the gate's
    promote; a running server does the same through ``Live.activate``). NotServable leaves the
    live version as it is; LookupError for an unknown version."""
    with Session(engine, expire_on_commit=False) as session:
        target = session.get(store.ModelVersion, version_id)
        if target is None:
            raise LookupError(f"no model version {version_id}")
    checked_load(lambda v: load_served(engine, v), target)
    with Session(engine, expire_on_commit=False) as session:
        return store.set_live(session, version_id, retire_as)


def register(engine: Engine, path: str | Path, spec: str = "") -> int:
    """Make the model folder ``path`` the live version (registering it first); returns its id.

    Its item metadata (items.json) goes into the store's items table, and its rating scale
    becomes the store's when none is recorded. Every rating already in the store counts as seen
    by this model (``trained_through`` = now).
    """
    from collabkit.checkpoint import load_items

    folder = str(Path(path).resolve())
    with Session(engine) as session:
        known = [v for v in store.versions(session) if v.path == folder]
        version = known[-1] if known else store.add_version(session, folder, spec)
        items = load_items(folder)
        if items is not None:
            store.upsert_items(session, items)
        store.record_scale(session, model_scale(folder))
        if version.status != "live":
            store.set_live(session, version.id)
        return version.id


def model_scale(folder: str | Path, values: np.ndarray | None = None) -> Scale:
    """The scale a saved model was trained on (its config.json), the step inferred from ``values``."""
    import json

    from collabkit.models.base import RATINGS, get_model_class
    from collabkit.serve.validation import scale_of

    config = json.loads((Path(folder) / "config.json").read_text())
    ratings = RATINGS in get_model_class(config["kind"]).capabilities
    recorded = config.get("meta", {}).get("scale") or []
    if len(recorded) == 2:
        low, high = recorded
    elif values is not None and len(values):
        low, high = float(np.min(values)), float(np.max(values))
    else:
        low, high = UNRECORDED.low, UNRECORDED.high
    return scale_of(low, high, values, ratings=ratings, source="model")


def rollback(engine: Engine) -> int:
    """Make the previously live version live again (after it loads and answers); returns its id."""
    with Session(engine) as session:
        previous = store.previous_version(session)
        if previous is None:
            raise LookupError("no earlier live version to roll back to")
    return promote_version(engine, previous.id, "rolled back").id
