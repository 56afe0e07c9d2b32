"""Onboarding: the questions to ask a newcomer, and a new user from answers -> recommendations."""

from __future__ import annotations

import uuid
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Query, Request

from collabkit.serve import store
from collabkit.serve.api.ratings import check_scale
from collabkit.serve.api.recommendations import respond
from collabkit.serve.deps import DB, FieldError, Model, Reader, Writer
from collabkit.serve.schemas import ERRORS, V1, NewUser, Question, Questions, Recommendations
from collabkit.serve.validation import exact

router = APIRouter(prefix=V1, tags=["onboarding"], responses=ERRORS)


@router.get("/onboarding/questions", dependencies=[Reader])
def questions(served: Model, n: Annotated[int, Query(ge=1, le=50)] = 10) -> Questions:
    """The first ``n`` items to ask a new user about, most informative first (``Questionnaire``):
    popular items people disagree on, spread across the taste space."""
    from collabkit.serve.recommender import titles

    ids = served.questions[:n]
    out = [Question(item=str(i), title=t) for i, t in zip(ids, titles(served, ids))]
    return Questions(model_version=served.version, questions=out)


@router.post("/users", status_code=201, dependencies=[Writer])
def new_user(body: NewUser, request: Request, session: DB, served: Model) -> Recommendations:
    """Create a user from onboarding answers (stored as their ratings) and return their list.

    Each answer's item must be the text of an item the live model knows ("5e1" is not item 50)
    and its rating on the store's scale; otherwise 422 naming the answer, and nothing is stored.
    """
    from collabkit.serve.recommender import for_answers

    user = body.user or uuid.uuid4().hex
    served = request.app.state.canary.route(user, served)  # issue 25: the user's canary arm
    if session.get(store.User, user) is not None:
        raise FieldError(409, "user", f"user {user!r} already exists: post ratings instead")
    answers = pd.DataFrame([a.model_dump() for a in body.answers], columns=["item", "rating"])
    unknown = exact(served.model.items, answers["item"].tolist()) < 0
    if unknown.any():
        k = int(unknown.argmax())
        raise FieldError(
            422, f"answers.{k}.item", f"item {answers['item'][k]!r} is unknown to the live model"
        )
    if answers["item"].duplicated().any():
        raise FieldError(422, "answers", "answers rate the same item twice")
    check_scale(session, ((f"answers.{k}.rating", a.rating) for k, a in enumerate(body.answers)))
    rows = [{"user": user, "item": a.item, "value": a.rating} for a in body.answers]
    if rows:
        store.upsert_ratings(session, rows)
        request.app.state.metrics.ratings.inc(len(rows))
    else:
        store._ensure(session, store.User, [user], {"created_at": store.now()})
        session.commit()
    session.close()
    frame = for_answers(served, user, answers, body.n)
    mode = "fold-in" if rows else "average-taste"
    return respond(request, served, user, mode, frame)
