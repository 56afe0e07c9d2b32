"""Ratings: a bounded batch, one rating at its own address (PUT: last write wins), delete one.

Every value is checked against the store's scale (``validation``) before anything is written: a
request with one bad value stores nothing and gets a 422 naming the field and the allowed range.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Path, Request
from sqlalchemy.orm import Session

from collabkit.serve import store
from collabkit.serve.deps import DB, FieldError, Writer
from collabkit.serve.schemas import ERRORS, V1, Deleted, RatingsIn, RatingValue, Written
from collabkit.serve.strict import StrictRoute
from collabkit.serve.validation import ID_LENGTH, ID_PATTERN, first_problem

router = APIRouter(prefix=V1, tags=["ratings"], responses=ERRORS, route_class=StrictRoute)
PathId = Annotated[str, Path(min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN)]


def check_scale(request: Request, session: Session, values: Iterable[tuple[str, float]]) -> None:
    """422 naming the first value off the store's scale (and the scale); nothing is stored then."""
    problem = first_problem(request.app.state.recent.store_scale(session), values)
    if problem is not None:
        raise FieldError(422, *problem)


@router.post("/ratings", status_code=201, dependencies=[Writer])
def write_ratings(body: RatingsIn, request: Request, session: DB) -> Written:
    """Store a batch of ratings; a repeated (user, item) replaces the earlier value.

    The response comes after the commit reached the disk: a 2xx rating is never lost (writes
    arriving together share the commit: ``serve.commits``).
    """
    limit = request.app.state.settings.max_batch
    if len(body.ratings) > limit:
        raise FieldError(
            422, "ratings", f"ratings: at most {limit} per request, got {len(body.ratings)}"
        )
    check_scale(request, session, ((f"body.ratings.{k}.value", r.value) for k, r in enumerate(body.ratings)))
    session.close()  # the key and the scale are checked: the commit is the writer thread's
    written = request.app.state.commits.write([r.model_dump() for r in body.ratings])
    request.app.state.metrics.ratings.inc(written)
    return Written(written=written)


@router.put("/users/{user}/ratings/{item}", dependencies=[Writer])
async def put_rating(user: PathId, item: PathId, body: RatingValue, request: Request) -> Written:
    """Store one rating (replacing any earlier one of this user for this item). On the event
    loop: the scale is known (``deps.Recent``) and the commit is awaited, holding no thread."""
    with Session(request.app.state.engine) as session:
        check_scale(request, session, [("body.value", body.value)])
    await request.app.state.commits.write_async([{"user": user, "item": item, **body.model_dump()}])
    request.app.state.metrics.ratings.inc()
    return Written(written=1)


@router.delete("/users/{user}/ratings/{item}", dependencies=[Writer])
def delete_rating(user: PathId, item: PathId, session: DB) -> Deleted:
    """Remove the rating ``user`` gave ``item`` (404 when there is none)."""
    if not store.delete_rating(session, user, item):
        raise FieldError(404, "item", f"user {user!r} has no rating of item {item!r}")
    return Deleted(deleted=1)
