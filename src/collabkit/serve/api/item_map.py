"""The map of tastes and each item's story: PCA of the live model's item factors, learned biases.

``GET /v1/map`` gives the chapter's picture as points (``interpret.pca.item_pca`` fitted on the
1,000 most-rated items of the store, the ``n`` most-rated shown); ``GET /v1/items/{item}/story``
gives one item's metadata, rating count and mean, and its bias story (``interpret.biases``):
is it liked more or less than other films of its kind (its first genre), once taste is
accounted for? Both are computed once per model version and kept with it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from collabkit.serve import store
from collabkit.serve.api.ratings import PathId
from collabkit.serve.deps import DB, FieldError, Model, Reader
from collabkit.serve.schemas import ERRORS, V1, text
from collabkit.serve.strict import StrictRoute

router = APIRouter(prefix=V1, tags=["map"], responses=ERRORS, route_class=StrictRoute)
PCA_TOP = 1000  # the PCA is fitted on the most-rated items: their factors are the best estimated


class Point(BaseModel):
    item: str
    x: float
    y: float
    title: str | None = None
    genres: str | None = None
    bias: float | None = None
    n_ratings: int = 0


class Extremes(BaseModel):
    low: list[str]
    high: list[str]


class MapOut(BaseModel):
    model_version: int
    x: int = Field(description="principal component on the horizontal axis (1-based)")
    y: int
    explained_variance: list[float] = Field(description="share of the factors' variance per component")
    extremes: dict[str, Extremes] = Field(description="titles at each end of each component")
    points: list[Point]


class Story(BaseModel):
    item: str
    model_version: int
    title: str | None = None
    metadata: dict = Field(default_factory=dict)
    n_ratings: int
    mean_rating: float | None = None
    bias: float | None = None
    kind: str | None = Field(None, description="the films it is compared with (its first genre)")
    kind_size: int | None = None
    kind_rank: int | None = Field(None, description="its bias rank among its kind (1 = highest)")
    kind_median_bias: float | None = None
    story: str


@dataclass
class Views:
    """What the map and the stories read, for one served model version."""

    pca: Any  # ItemPCA, or the ValueError that says why there is none
    biases: pd.DataFrame | None  # bias_table with counts and means (None: no biases)
    stats: pd.DataFrame  # per item (store ids): n_ratings, mean_rating


_lock = threading.Lock()


def views(request: Request, served: Any) -> Views:
    """The served version's views, computed on first use and kept until the version changes."""
    with _lock:
        cached = getattr(request.app.state, "map_views", None)
        if cached is not None and cached[0] is served:
            return cached[1]
        from collabkit.data.interactions import Ratings
        from collabkit.interpret.biases import bias_table
        from collabkit.interpret.pca import item_pca

        with Session(request.app.state.engine) as session:
            frame = store.all_ratings(session)[["user", "item", "rating"]]
        stats = frame.groupby("item")["rating"].agg(n_ratings="size", mean_rating="mean")
        raw = frame["item"].map(served.item_ids)
        known = frame[raw.notna()].assign(item=raw[raw.notna()].to_numpy(dtype=served.model.items.ids.dtype))
        ratings = Ratings(known.reset_index(drop=True)) if len(known) else None
        try:
            pca: Any = item_pca(served.model, 3, ratings, served.items, top=PCA_TOP)
        except ValueError as e:
            pca = e
        try:
            biases = bias_table(served.model, "item", ratings, served.items)
            biases["item"] = biases["item"].astype(str)
        except ValueError:
            biases = None
        out = Views(pca, biases, stats)
        request.app.state.map_views = (served, out)
        return out


@router.get("/map", dependencies=[Reader])
def item_map(
    request: Request,
    served: Model,
    n: Annotated[int, Query(ge=2, le=2000, description="points: the most-rated items")] = 300,
    x: Annotated[int, Query(ge=1, le=3)] = 1,
    y: Annotated[int, Query(ge=1, le=3)] = 2,
) -> MapOut:
    """The items' PCA map: coordinates on components ``x`` and ``y`` of the ``n`` most-rated
    items, with title, genres, bias and rating count for the hover."""
    from collabkit.interpret.pca import map_points

    pca = views(request, served).pca
    if isinstance(pca, ValueError):
        raise HTTPException(409, f"the live model has no map: {pca}")
    k = len(pca.components)
    if x == y or x > k or y > k:
        raise FieldError(422, "y", f"x and y must be two different components in 1..{k}")
    pts = map_points(pca, n)
    out = [_point(r, x, y) for _, r in pts.iterrows()]
    ends = {f"pc{j}": pca.extremes(j, 5) for j in (x, y)}
    extremes = {c: Extremes(low=list(map(str, e["low"])), high=list(map(str, e["high"]))) for c, e in ends.items()}
    return MapOut(
        model_version=served.version, x=x, y=y, extremes=extremes, points=out,
        explained_variance=[float(v) for v in pca.explained_variance_ratio],
    )  # fmt: skip


@router.get("/items/{item}/story", dependencies=[Reader])
def item_story(item: PathId, request: Request, session: DB, served: Model) -> Story:
    """One item: title, metadata, rating count and mean (store), and its bias story."""
    if item not in served.item_ids:
        raise FieldError(404, "item", f"item {item!r} is unknown to the live model")
    row = session.get(store.Item, item)
    meta = {k: v for k, v in (row.meta or {}).items() if k != "title"} if row else {}
    title = row.title if row is not None else None
    session.close()
    v = views(request, served)
    n = int(v.stats["n_ratings"].get(item, 0))
    mean = _num(v.stats["mean_rating"].get(item))
    facts = _bias_facts(v.biases, item)
    story = _tell(title or item, n, mean, facts)
    return Story(item=item, model_version=served.version, title=title, metadata=meta,
                 n_ratings=n, mean_rating=mean, story=story, **facts)  # fmt: skip


def _point(r: pd.Series, x: int, y: int) -> Point:
    return Point(
        item=str(r["item"]), x=float(r[f"pc{x}"]), y=float(r[f"pc{y}"]),
        title=text(r.get("title")), genres=text(r.get("genres")),
        bias=_num(r.get("bias")), n_ratings=int(r.get("n_ratings", 0) or 0),
    )  # fmt: skip


def _bias_facts(table: pd.DataFrame | None, item: str) -> dict[str, Any]:
    """Its bias, and its rank among the items sharing its first genre (all items without genres)."""
    if table is None:
        return {}
    me = table[table["item"] == item]
    if not len(me):
        return {}
    bias = float(me["bias"].iloc[0])
    kind, peers = None, table
    genres = me["genres"].iloc[0] if "genres" in table.columns else None
    if isinstance(genres, str) and genres:
        kind = genres.split("|")[0]
        peers = table[table["genres"].fillna("").str.split("|").str[0] == kind]
    rank = int((peers["bias"] > bias).sum()) + 1
    return {"bias": bias, "kind": kind, "kind_size": len(peers), "kind_rank": rank,
            "kind_median_bias": float(np.median(peers["bias"]))}  # fmt: skip


def _tell(name: str, n: int, mean: float | None, f: dict[str, Any]) -> str:
    """The bias story in a sentence or two."""
    seen = f"{name} has {n} rating{'s' * (n != 1)}" + (f", {mean:.2f} on average." if mean is not None else ".")
    if "bias" not in f:
        return seen + " The live model learns no item biases, so there is no bias story to tell."
    kind = f"{f['kind']} films" if f["kind"] else "films"
    side = "more" if f["bias"] > f["kind_median_bias"] else "less"
    return (
        f"{seen} Once taste is accounted for, it is liked {side} than most {kind}: its bias "
        f"{f['bias']:+.2f} ranks {f['kind_rank']} of {f['kind_size']} {kind} "
        f"(median {f['kind_median_bias']:+.2f})."
    )


def _num(v: object) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)  # type: ignore[arg-type]

