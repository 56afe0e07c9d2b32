"""Write ratings (one or a bounded batch, last write wins) and delete one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from collabkit.serve import store
from collabkit.serve.deps import DB, FieldError, Writer
from collabkit.serve.schemas import ERRORS, ID_PATTERN, Deleted, RatingIn, RatingsIn, Written

router = APIRouter(tags=["ratings"], responses=ERRORS)
PathId = Annotated[str, Path(min_length=1, max_length=store.ID_LENGTH, pattern=ID_PATTERN)]


@router.post("/ratings", status_code=201, dependencies=[Writer])
def write_ratings(body: RatingIn | RatingsIn, request: Request, session: DB) -> Written:
    """Store one rating or a batch; a repeated (user, item) replaces the earlier value.

    The response comes after the commit reached the disk: a 2xx rating is never lost.
    """
    rows = body.ratings if isinstance(body, RatingsIn) else [body]
    limit = request.app.state.settings.max_batch
    if len(rows) > limit:
        raise FieldError(422, "ratings", f"ratings: at most {limit} per request, got {len(rows)}")
    written = store.upsert_ratings(session, [r.model_dump() for r in rows])
    request.app.state.metrics.ratings.inc(written)
    return Written(written=written)


@router.delete("/ratings/{user}/{item}", status_code=200, dependencies=[Writer])
def delete_rating(user: PathId, item: PathId, session: DB) -> Deleted:
    """Remove the rating ``user`` gave ``item`` (404 when there is none)."""
    if not store.delete_rating(session, user, item):
        raise FieldError(404, "item", f"user {user!r} has no rating of item {item!r}")
    return Deleted(deleted=1)
