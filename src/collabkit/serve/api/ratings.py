"""Ratings: a bounded batch, one rating at its own address (PUT: last write wins), delete one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from collabkit.serve import store
from collabkit.serve.deps import DB, FieldError, Writer
from collabkit.serve.schemas import ERRORS, ID_PATTERN, V1, Deleted, RatingsIn, RatingValue, Written

router = APIRouter(prefix=V1, tags=["ratings"], responses=ERRORS)
PathId = Annotated[str, Path(min_length=1, max_length=store.ID_LENGTH, pattern=ID_PATTERN)]


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
    session.close()  # the key is checked: the commit is the writer thread's
    written = request.app.state.commits.write([r.model_dump() for r in body.ratings])
    request.app.state.metrics.ratings.inc(written)
    return Written(written=written)


@router.put("/users/{user}/ratings/{item}", dependencies=[Writer])
def put_rating(
    user: PathId, item: PathId, body: RatingValue, request: Request, session: DB
) -> Written:
    """Store one rating (replacing any earlier one of this user for this item)."""
    session.close()
    request.app.state.commits.write([{"user": user, "item": item, **body.model_dump()}])
    request.app.state.metrics.ratings.inc()
    return Written(written=1)


@router.delete("/users/{user}/ratings/{item}", dependencies=[Writer])
def delete_rating(user: PathId, item: PathId, session: DB) -> Deleted:
    """Remove the rating ``user`` gave ``item`` (404 when there is none)."""
    if not store.delete_rating(session, user, item):
        raise FieldError(404, "item", f"user {user!r} has no rating of item {item!r}")
    return Deleted(deleted=1)
