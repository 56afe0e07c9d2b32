"""Pydantic schemas at the edge: what clients send and get back (the OpenAPI document)."""

from __future__ import annotations

import math
import time
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from collabkit.serve.validation import BOUND, ID_LENGTH, ID_PATTERN

V1 = "/v1"  # every resource route lives under the API version
Id = Annotated[str, Field(min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN)]
# finite and bounded here; on the store's scale too (api.ratings checks that against the store)
Value = Annotated[float, Field(ge=-BOUND, le=BOUND, allow_inf_nan=False)]


def text(value: object) -> str | None:
    """A title from item metadata as text (None for a missing one: None or NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


class Strict(BaseModel):
    """A request body: unknown fields are refused, nothing is coerced ("5" is not 5, true not 1), and
    no number is NaN or infinite (refused as such, not as "out of range")."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


#: how far past the server's clock a rating's time may be (clocks drift; a day is no drift)
CLOCK_SKEW = 86_400.0


def _not_future(t: float | None) -> float | None:
    """A rating from the future would be the newest forever (it would sit in every recency holdout)."""
    if t is not None and t > time.time() + CLOCK_SKEW:
        raise ValueError(f"{t:.0f} is in the future (the server's clock says {time.time():.0f}, epoch seconds)")
    return t


Timestamp = Annotated[
    float | None,
    Field(ge=0, le=1e11, allow_inf_nan=False, description="epoch seconds, not later than a day from now (default: now)"),
    AfterValidator(_not_future),
]


class RatingValue(Strict):
    value: Value
    timestamp: Timestamp = None


class RatingIn(Strict):
    user: Id
    item: Id
    value: Value
    timestamp: Timestamp = None


class RatingsIn(Strict):
    ratings: list[RatingIn] = Field(min_length=1)


class Written(BaseModel):
    written: int = Field(
        description="ratings stored (a repeated (user, item) replaced the old one)"
    )


class Deleted(BaseModel):
    deleted: int


class Recommendation(BaseModel):
    item: str
    rank: int
    score: float
    title: str | None = None
    because: str = ""
    p_love: float | None = Field(
        None, description="chance of a rating of love_at or more (models with a distribution)"
    )
    new_item: bool = Field(
        False, description="an item the model version was not trained on, placed by item fold-in from its ratings since"
    )


class Recommendations(BaseModel):
    user: str
    model_version: int
    mode: Literal["model", "fold-in", "average-taste"]
    fallback: Literal["average-taste"] | None = None
    love_at: float | None = Field(
        None, description="the rating p_love counts from (null: the model gives no distribution)"
    )
    items: list[Recommendation]


class Answer(Strict):
    item: Id
    rating: Value


class NewUser(Strict):
    user: Id | None = Field(None, description="the new user's id (default: a random one)")
    answers: list[Answer] = Field(default_factory=list, max_length=1000)
    n: int = Field(10, ge=1, le=100)


class Similar(BaseModel):
    item: str
    similarity: float
    title: str | None = None
    new_item: bool = Field(False, description="placed by item fold-in, not by training (see Recommendation)")


class SimilarItems(BaseModel):
    item: str
    model_version: int
    similar: list[Similar]


class ItemOut(BaseModel):
    item: str
    title: str | None = None
    metadata: dict = Field(default_factory=dict)


class Question(BaseModel):
    item: str
    title: str | None = None


class Questions(BaseModel):
    model_version: int
    questions: list[Question]


class VersionOut(BaseModel):
    id: int
    name: str = Field(description="the model's folder name")
    path: str | None = Field(description="the model's folder on the server: shown to admin keys only, else null")
    spec: str
    status: Literal["candidate", "live", "retired", "rolled back"]
    metrics: dict
    created_at: str | None
    promoted_at: str | None
    canary: float | None = Field(None, description="share of users it serves as a running canary")


class RetrainIn(Strict):
    spec: str = Field("dot-bias(n_factors=50)", max_length=200, pattern=r"^[\w\-(), .=\[\]'\"]+$")
    holdout: float = Field(0.1, gt=0, lt=1, description="share of the most recent ratings held out")
    tolerance: float = Field(0.01, ge=0, le=10, description="promote if RMSE <= live RMSE + this")
    incremental: bool = Field(False, description="update the live model with the ratings since it was trained instead (spec not used)")


class JobOut(BaseModel):
    """A retraining job: queued -> running -> done | failed (``reason`` says why)."""

    id: int
    spec: str
    status: Literal["queued", "running", "failed", "done"]
    reason: str
    estimate_mb: float = Field(description="memory the job was estimated to need")
    limit_mb: float = Field(description="memory its process may use")
    version: int | None = Field(None, description="the model version it trained (done)")
    result: dict = Field(default_factory=dict, description="the gate's record (done)")
    created_at: str | None
    started_at: str | None
    finished_at: str | None


class StoredRating(BaseModel):
    item: str
    value: float
    timestamp: float
    written_at: float


class UserRatings(BaseModel):
    user: str
    ratings: list[StoredRating]
    next: str | None = Field(None, description="pass as ?after= for the next page (null: last page)")


class UserDeleted(BaseModel):
    user: str
    ratings: int = Field(description="ratings deleted")
    exposures: int = Field(description="exposure log rows deleted")


class Problem(BaseModel):
    field: str
    problem: str


class ErrorOut(BaseModel):
    error: str
    field: str | None = None
    problems: list[Problem] | None = None


ERRORS = {
    s: {"model": ErrorOut, "description": d}
    for s, d in {
        400: "Bad request", 401: "Missing or invalid API key", 403: "The key's role may not do this",
        404: "Not found", 409: "Conflict", 413: "Body too large", 415: "Body not sent as application/json",
        422: "Invalid field",
        503: "No live model yet",
    }.items()
}  # fmt: skip
