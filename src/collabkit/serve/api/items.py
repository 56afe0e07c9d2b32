"""Items: search by title, similar items by factor cosine."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from collabkit.models.capabilities import CapabilityError
from collabkit.serve import store
from collabkit.serve.api.ratings import PathId
from collabkit.serve.deps import DB, FieldError, Model, Reader
from collabkit.serve.schemas import ERRORS, V1, ItemOut, Similar, SimilarItems, text
from collabkit.serve.strict import StrictRoute
from collabkit.serve.validation import TEXT_PATTERN

router = APIRouter(prefix=V1, tags=["items"], responses=ERRORS, route_class=StrictRoute)


@router.get("/items", dependencies=[Reader])
def search(
    session: DB,
    q: Annotated[
        str, Query(min_length=1, max_length=200, pattern=TEXT_PATTERN, description="part of a title")
    ],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[ItemOut]:
    """Items whose title contains ``q`` (case-insensitive), shortest titles first."""
    return [
        ItemOut(item=i.id, title=i.title, metadata=i.meta or {})
        for i in store.search_items(session, q, limit)
    ]


@router.get("/items/{item}/similar", dependencies=[Reader])
def similar(
    item: PathId, request: Request, served: Model, k: Annotated[int, Query(ge=1, le=100)] = 10
) -> SimilarItems:
    """The ``k`` items whose latent factors point most like ``item``'s (cosine similarity); a knn
    model's: its largest item-item similarities."""
    if item not in served.item_index:  # the exact text of an id: "5e1" is not item 50
        raise FieldError(404, "item", f"item {item!r} is unknown to the live model")
    try:
        near, sims = served.similar(item, k)
    except CapabilityError as e:  # the live model's kind, not the request: as /v1/map
        raise HTTPException(409, f"the live model has no similar items: {e}") from None
    except ValueError as e:  # too few factors
        raise FieldError(422, "item", str(e)) from None
    titles = served.titles[near].tolist() if served.titles is not None else [None] * len(near)
    new = served.new_item[near].tolist()
    out = [Similar(item=i, similarity=float(s), title=text(t), new_item=f)
           for i, s, t, f in zip(served.item_text[near].tolist(), sims.tolist(), titles, new)]  # fmt: skip
    return SimilarItems(item=item, model_version=served.version, similar=out)
