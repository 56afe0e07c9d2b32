"""Top-n for a user in their own ids, seen items excluded, each with a reason; logs exposures."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Query, Request

from collabkit.serve import store
from collabkit.serve.api.ratings import PathId
from collabkit.serve.deps import DB, Model, Reader
from collabkit.serve.schemas import ERRORS, V1, Recommendation, Recommendations, text

router = APIRouter(prefix=V1, tags=["recommendations"], responses=ERRORS)
N = Annotated[int, Query(ge=1, le=100, description="list length")]


@router.get("/users/{user}/recommendations", dependencies=[Reader])
def recommendations(
    user: PathId, request: Request, session: DB, served: Model, n: N = 10
) -> Recommendations:
    """The user's top ``n``. ``mode`` says how the user was placed: ``model`` (known to the live
    model), ``fold-in`` (new to it, or rated since it was trained: folded in from the stored
    ratings now) or ``average-taste`` (no ratings: the fallback list, also named in ``fallback``)."""
    from collabkit.serve.recommender import for_user

    served = request.app.state.canary.route(user, served)  # issue 25: the user's canary arm
    stored = store.user_ratings(session, user)
    session.close()  # give the connection back before the model works
    mode, frame = for_user(served, user, stored, n)
    return respond(request, served, user, mode, frame)


def respond(
    request: Request, served: Any, user: str, mode: str, frame: pd.DataFrame
) -> Recommendations:
    """Lay out a recommendation frame, count it and log its exposures."""
    from collabkit.recommend.recommend import love_at

    items = [
        Recommendation(item=str(r.item), rank=int(r.rank), score=float(r.score),
                       title=text(getattr(r, "title", None)), because=str(getattr(r, "because", "")),
                       p_love=_chance(getattr(r, "p_love", None)))
        for r in frame.itertuples(index=False)
    ]  # fmt: skip
    state = request.app.state
    state.metrics.fallbacks.labels(mode).inc()
    if state.settings.exposures:
        shown = time.time()
        state.exposures.log(
            [{"user_id": user, "item_id": i.item, "position": i.rank, "model_version": served.version,
              "shown_at": shown} for i in items]
        )  # fmt: skip
    fallback = "average-taste" if mode == "average-taste" else None
    return Recommendations(
        user=user, model_version=served.version, mode=mode, fallback=fallback,
        love_at=love_at(served.model), items=items,
    )  # fmt: skip


def _chance(p: float | None) -> float | None:
    return None if p is None or math.isnan(p) else round(float(p), 4)  # NaN: none to tell
