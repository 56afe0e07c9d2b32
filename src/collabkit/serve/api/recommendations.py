"""Top-n for a user in their own ids, seen items excluded, each with a reason; logs exposures.

The request path is store -> engine -> response: one indexed query (the user's stamp or their
ratings: ``place``), the version's ``Engine`` for the list (with the other requests of the same turn: ``serve.batching``),
one orjson encoding for the body.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from collabkit.serve import store
from collabkit.serve.api.ratings import PathId
from collabkit.serve.deps import Model, Reader
from collabkit.serve.schemas import ERRORS, V1, Recommendations
from collabkit.serve.strict import StrictRoute

router = APIRouter(prefix=V1, tags=["recommendations"], responses=ERRORS, route_class=StrictRoute)
N = Annotated[int, Query(ge=1, le=100, description="list length")]


@router.get("/users/{user}/recommendations", dependencies=[Reader], response_model=Recommendations)
async def recommendations(user: PathId, request: Request, engine: Model, n: N = 10) -> Response:
    """The user's top ``n``. ``mode`` says how the user was placed: ``model`` (known to the live
    model), ``fold-in`` (new to it, or rated since it was trained: folded in from the stored
    ratings now) or ``average-taste`` (no ratings: the fallback list, also named in ``fallback``)."""
    # On the event loop, not in the thread pool: the work is a short indexed query and a little
    # CPU. Threads made it slower, not faster: each query hands the GIL back and forth (4 threads
    # ran 4x fewer queries a second than one), and a worker process has one core to give anyway.
    # The list itself is computed with the other requests of this turn (``serve.batching``).
    engine = request.app.state.canary.route(user, engine)  # the user's canary arm, if one runs
    answer = await request.app.state.batcher.answer(engine, place(request.app.state.engine, engine, user, n))
    return respond(request, engine, user, answer)


def place(db: Any, engine: Any, user: str, n: int) -> Any:
    """Place ``user`` for ``engine`` (``Engine.place``): a known user whose stamp in the store is
    the one captured with their precomputed list costs one primary-key read; anyone else, one
    read of their ratings (after the stamp's, when they have one)."""
    captured = engine.stamp(user)
    if captured is not None and store.user_stamp(db, user) == captured:
        return engine.unchanged(user, n)
    items, values, written = store.user_ratings(db, user)
    return engine.place(user, items, values, written, n)


def respond(request: Request, engine: Any, user: str, answer: Any, status: int = 200) -> Response:
    """Lay out an engine's answer (``Recommendations``), count it and log its exposures."""
    ids = engine.item_text[answer.items].tolist()
    # a recommendation is named: its title, else its id (when the version has titles at all)
    titles = engine.names[answer.items].tolist() if engine.titles is not None else [None] * len(ids)
    p = answer.p_love.tolist() if answer.p_love is not None else [None] * len(ids)
    new = engine.new_item[answer.items].tolist()  # placed by item fold-in since the version was trained
    items = [
        {"item": i, "rank": r, "score": float(s), "title": t, "because": b, "p_love": _chance(q), "new_item": f}
        for r, (i, s, t, b, q, f) in enumerate(zip(ids, answer.scores.tolist(), titles, answer.because.tolist(), p, new), 1)
    ]
    state = request.app.state
    state.metrics.fallbacks.labels(answer.mode).inc()
    if state.settings.exposures:
        shown = time.time()
        state.exposures.log(
            [{"user_id": user, "item_id": i, "position": r, "model_version": engine.version, "shown_at": shown}
             for r, i in enumerate(ids, 1)]
        )  # fmt: skip
    body = {
        "user": user, "model_version": engine.version, "mode": answer.mode,
        "fallback": "average-taste" if answer.mode == "average-taste" else None,
        "love_at": engine.love_at, "items": items,
    }  # fmt: skip
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _chance(p: float | None) -> float | None:
    return None if p is None or math.isnan(p) else round(float(p), 4)  # NaN: none to tell
