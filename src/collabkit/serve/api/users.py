"""A user's stored ratings, read back a page at a time, and forgetting a user (writer key, like writes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from collabkit.serve import store
from collabkit.serve.api.ratings import PathId
from collabkit.serve.deps import DB, FieldError, Writer
from collabkit.serve.schemas import ERRORS, V1, StoredRating, UserDeleted, UserRatings
from collabkit.serve.strict import StrictRoute
from collabkit.serve.validation import ID_LENGTH, ID_PATTERN

router = APIRouter(prefix=V1, tags=["users"], responses=ERRORS, route_class=StrictRoute)


@router.get("/users/{user}/ratings", dependencies=[Writer])
def read_ratings(
    user: PathId,
    session: DB,
    limit: Annotated[int, Query(ge=1, le=1000, description="ratings per page")] = 100,
    after: Annotated[
        str | None,
        Query(min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN,
              description="the page after this item id (the previous page's next)"),
    ] = None,
) -> UserRatings:
    """What the store holds for ``user``, in item order (ids compared as text), ``limit`` at a time.
    A user with no ratings gets an empty page; ``next`` is null on the last page."""
    rows = store.user_ratings_page(session, user, limit + 1, after)
    page = [StoredRating(item=r.item_id, value=r.value, timestamp=r.timestamp, written_at=r.written_at)
            for r in rows[:limit]]  # fmt: skip
    return UserRatings(user=user, ratings=page, next=page[-1].item if len(rows) > limit else None)


@router.delete("/users/{user}", dependencies=[Writer])
def forget_user(user: PathId, request: Request, session: DB) -> UserDeleted:
    """Delete ``user``, their ratings and the exposure log's rows about them (404 when the store
    has never heard of them). The next retraining does not see them; a model trained before still
    holds what it learned from them until then."""
    request.app.state.exposures.flush()  # rows still buffered would otherwise land after the delete
    done = store.delete_user(session, user)
    if done is None:
        raise FieldError(404, "user", f"the store has no user {user!r}")
    return UserDeleted(user=user, ratings=done[0], exposures=done[1])
