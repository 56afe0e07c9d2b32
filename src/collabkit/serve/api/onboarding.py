"""Onboarding: the questions to ask a newcomer, and a new user from answers -> recommendations."""

from __future__ import annotations

import uuid
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from collabkit.serve import store
from collabkit.serve.api.ratings import check_scale
from collabkit.serve.api.recommendations import respond
from collabkit.serve.deps import FieldError, Model, Reader, Writer
from collabkit.serve.schemas import ERRORS, V1, NewUser, Question, Questions, Recommendations, text
from collabkit.serve.strict import StrictRoute

router = APIRouter(prefix=V1, tags=["onboarding"], responses=ERRORS, route_class=StrictRoute)


@router.get("/onboarding/questions", dependencies=[Reader])
def questions(served: Model, n: Annotated[int, Query(ge=1, le=50)] = 10) -> Questions:
    """The first ``n`` items to ask a new user about, most informative first (``Questionnaire``):
    popular items people disagree on, spread across the taste space."""
    ids = [str(i) for i in served.questions[:n]]
    out = [Question(item=i, title=_title(served, i)) for i in ids]
    return Questions(model_version=served.version, questions=out)


def _title(engine: object, item: str) -> str | None:
    return None if engine.titles is None else text(engine.titles[engine.item_index[item]])


@router.post("/users", status_code=201, dependencies=[Writer], response_model=Recommendations)
async def new_user(body: NewUser, request: Request, served: Model) -> Response:
    """Create a user from onboarding answers (stored as their ratings) and return their list.

    Each answer's item must be the text of an item the live model knows ("5e1" is not item 50)
    and its rating on the store's scale; otherwise 422 naming the answer, and nothing is stored.
    On the event loop like a recommendation: the answers share the group commit (awaited).
    """
    user = body.user or uuid.uuid4().hex
    served = request.app.state.canary.route(user, served)  # issue 25: the user's canary arm
    items = [a.item for a in body.answers]
    idx, bad = served.answers_index(items)
    if bad:
        raise FieldError(422, f"answers.{bad[0]}.item", f"item {items[bad[0]]!r} is unknown to the live model")
    if len(set(items)) < len(items):
        raise FieldError(422, "answers", "answers rate the same item twice")
    rows = [{"user": user, "item": a.item, "value": a.rating} for a in body.answers]
    with Session(request.app.state.engine) as session:
        if session.get(store.User, user) is not None:
            raise FieldError(409, "user", f"user {user!r} already exists: post ratings instead")
        check_scale(request, session, ((f"answers.{k}.rating", a.rating) for k, a in enumerate(body.answers)))
        if not rows:
            store.add_user(session, user)
    if rows:
        await request.app.state.commits.write_async(rows)
        request.app.state.metrics.ratings.inc(len(rows))
    order = np.argsort(idx, kind="stable")
    ratings = np.array([a.rating for a in body.answers], dtype=np.float64)
    answer = await request.app.state.batcher.answer(served, served.place_answers(idx[order], ratings[order], body.n))
    return respond(request, served, user, answer, status=201)
