"""The monitor: is exposure or the training signal concentrating? Over time, per model version.

From the store's exposure log (what was shown) and its ratings (what the next model learns from):

    gini          Gini coefficient of exposures over the catalogue (0: every item shown equally,
                  1: one item takes everything); items never shown count as 0
    coverage      share of the catalogue shown at least once
    top1_share    share of exposures taken by the most-shown 1% of the catalogue
    users1_share  share of the ratings that come from the most active 1% of raters
    users5_share  ... 5% of raters (the chapter's "enthusiastic minority")

Over time the exposure log is cut into equal periods; the rating shares are cumulative (every
rating stored by the end of the period: what a retraining then would learn from). Per model
version, exposures are those the version served and ratings those it was trained on. Alerts
compare the latest period with the thresholds an admin sets (``PUT /v1/monitor/thresholds``).

The maths is ``collabkit.evaluate.exposure`` (shared with ``compare`` and the simulator), over
counts the SQL queries aggregate. Every query is bounded by a time window (``hours``, a week by
default): the exposure log is read only from its start (``shown_at`` is indexed), and ratings
stored before it come back as one total per rater.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import Integer, case, cast, delete, func, select
from sqlalchemy.orm import Session

from collabkit.evaluate import exposure as metrics
from collabkit.serve import store
from collabkit.serve.deps import DB, Admin, Reader
from collabkit.serve.schemas import ERRORS, V1, Strict
from collabkit.serve.strict import StrictRoute

router = APIRouter(prefix=V1, tags=["monitor"], responses=ERRORS, route_class=StrictRoute)

# metric -> the side of its threshold that raises an alert
ALERT_WHEN = {
    "gini": "above", "coverage": "below", "top1_share": "above",
    "users1_share": "above", "users5_share": "above",
}  # fmt: skip


# --- the metrics: collabkit.evaluate.exposure over the log's counts -----------------------------
def exposure_metrics(shown: pd.DataFrame, catalogue: int) -> dict[str, float | None]:
    """gini, coverage, top1_share of a slice of the log; ``shown``: one row per item shown (item,
    n), items never shown count as 0 over the catalogue."""
    n = max(catalogue, len(shown))
    counts = np.zeros(n)
    counts[: len(shown)] = shown["n"].to_numpy()
    return {
        "gini": metrics.gini(counts), "coverage": metrics.coverage(counts),
        "top1_share": _share(metrics.top_share(counts, 0.01)),
    }  # fmt: skip


def signal_metrics(per_user: np.ndarray) -> dict[str, float | None]:
    """users1_share, users5_share from the number of ratings of each rater."""
    return {
        "users1_share": _share(metrics.top_share(per_user, 0.01)),
        "users5_share": _share(metrics.top_share(per_user, 0.05)),
    }


def _share(x: float) -> float | None:
    return None if np.isnan(x) else x


# --- schemas -------------------------------------------------------------------------------------
Share = float | None


class Concentration(BaseModel):
    """The monitor's measures of one slice of the log (a period, or one model version)."""

    exposures: int
    gini: Share = None
    coverage: Share = None
    top1_share: Share = None
    users1_share: Share = None
    users5_share: Share = None


class Period(Concentration):
    start: str
    end: str
    ratings: int = Field(description="ratings stored by the end of the period")


class VersionPoint(Concentration):
    """A model version's exposures in the window, and the ratings it was trained on."""

    version: int
    status: str
    ratings: int = Field(description="ratings the version was trained on")


class Alert(BaseModel):
    metric: str
    value: float
    threshold: float
    when: str
    message: str


class Thresholds(Strict):
    """Alert thresholds (shares in 0..1); null or absent: no alert on that metric."""

    gini: Annotated[float | None, Field(ge=0, le=1)] = None
    coverage: Annotated[float | None, Field(ge=0, le=1)] = None
    top1_share: Annotated[float | None, Field(ge=0, le=1)] = None
    users1_share: Annotated[float | None, Field(ge=0, le=1)] = None
    users5_share: Annotated[float | None, Field(ge=0, le=1)] = None


class MonitorOut(BaseModel):
    catalogue: int = Field(description="items the live model can recommend (else items stored)")
    since: str = Field(description="start of the window read (exposures shown from then on)")
    series: list[Period]
    versions: list[VersionPoint]
    thresholds: Thresholds
    alerts: list[Alert]


class Ingestion(BaseModel):
    ratings: int
    users: int
    items: int
    exposures: int
    ratings_last_hour: int
    ratings_last_day: int
    exposures_last_hour: int
    last_rating_at: str | None
    scale: str = Field(description="the values the store accepts (its recorded scale)")
    skipped: int = Field(0, description="stored ratings skipped at the last full read: they break the rule")
    skipped_reasons: dict[str, int] = Field(default_factory=dict)


# --- routes --------------------------------------------------------------------------------------
@router.get("/monitor", dependencies=[Reader])
def monitor(
    request: Request,
    session: DB,
    periods: Annotated[int, Query(ge=1, le=200, description="periods the time range is cut into")] = 24,
    hours: Annotated[float, Query(gt=0, le=24 * 366, allow_inf_nan=False, description="the window: the last hours")] = 168,
) -> MonitorOut:
    """Concentration of exposure and of the training signal over the last ``hours``, over time
    and per model version, with the alerts the admin's thresholds raise on the latest period."""
    request.app.state.exposures.flush()  # what was shown so far, not only what was written
    served = request.app.state.live.current
    catalogue = len(served.item_text) if served is not None else _count(session, store.Item)
    since = time.time() - hours * 3600
    series = _series(session, catalogue, periods, since)
    versions = _versions(session, catalogue, since)
    limits = _thresholds(session)
    latest = next((p for p in reversed(series) if p.exposures), None)
    return MonitorOut(
        catalogue=catalogue, since=store.iso(since), series=series, versions=versions,
        thresholds=limits, alerts=alerts(latest.model_dump() if latest else {}, limits),
    )  # fmt: skip


@router.get("/monitor/thresholds", dependencies=[Reader])
def get_thresholds(session: DB) -> Thresholds:
    """The alert thresholds in force."""
    return _thresholds(session)


@router.put("/monitor/thresholds", dependencies=[Admin])
def put_thresholds(body: Thresholds, session: DB) -> Thresholds:
    """Replace the alert thresholds (admin); a null metric has no alert."""
    session.execute(delete(store.AlertThreshold))
    stamp = store.now()
    for metric, value in body.model_dump().items():
        if value is not None:
            session.add(store.AlertThreshold(metric=metric, value=value, updated_at=stamp))
    session.commit()
    return _thresholds(session)


@router.get("/monitor/ingestion", dependencies=[Reader])
def ingestion(request: Request, session: DB) -> Ingestion:
    """What has come in: ratings, users, items and exposures stored, and recent rates."""
    request.app.state.exposures.flush()
    t = time.time()
    recent = lambda col, s: _count(session, col.class_, col >= t - s)
    last = session.scalar(select(func.max(store.Rating.written_at)))
    skipped = store.fact(session, "skipped") or {}
    return Ingestion(
        ratings=_count(session, store.Rating), users=_count(session, store.User),
        items=_count(session, store.Item), exposures=_count(session, store.Exposure),
        ratings_last_hour=recent(store.Rating.written_at, 3600),
        ratings_last_day=recent(store.Rating.written_at, 86400),
        exposures_last_hour=recent(store.Exposure.shown_at, 3600),
        last_rating_at=store.iso(last), scale=_scale_text(store.scale(session)),
        skipped=int(skipped.get("ratings", 0)), skipped_reasons=skipped.get("reasons", {}),
    )  # fmt: skip


def _scale_text(scale: Any) -> str:
    return f"{scale.describe()} ({scale.source})" if scale.source else scale.describe()


# --- helpers -------------------------------------------------------------------------------------
def alerts(values: dict[str, Any], limits: Thresholds) -> list[Alert]:
    """An alert per metric whose value is on the wrong side of its threshold."""
    out = []
    for metric, threshold in limits.model_dump().items():
        value = values.get(metric)
        if threshold is None or value is None:
            continue
        when = ALERT_WHEN[metric]
        if (value > threshold) if when == "above" else (value < threshold):
            message = f"{metric} is {value:.3f}, {when} the threshold {threshold:.3f}"
            out.append(Alert(metric=metric, value=value, threshold=threshold, when=when, message=message))
    return out


def _count(session: Session, table: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _thresholds(session: Session) -> Thresholds:
    rows = session.scalars(select(store.AlertThreshold)).all()
    return Thresholds(**{r.metric: r.value for r in rows if r.metric in ALERT_WHEN})


def _bucket(session: Session, column: Any, t0: float, width: float) -> Any:
    """The period index of ``column`` as SQL: floor((column - t0) / width)."""
    x = (column - t0) / width
    return cast(x, Integer) if session.get_bind().dialect.name == "sqlite" else func.floor(x)


def _series(session: Session, catalogue: int, periods: int, since: float) -> list[Period]:
    """The window's exposures cut into ``periods`` equal periods from the first to the last."""
    E, R = store.Exposure, store.Rating
    window = E.shown_at >= since
    t0, t1 = session.execute(select(func.min(E.shown_at), func.max(E.shown_at)).where(window)).one()
    if t0 is None:
        return []
    width = max((t1 - t0) / periods, 1e-6)
    b = _bucket(session, E.shown_at, t0, width).label("b")
    shown = pd.DataFrame(
        session.execute(select(b, E.item_id, func.count()).where(window).group_by(b, E.item_id)).all(),
        columns=["b", "item", "n"],
    )
    shown["b"] = shown["b"].astype(int).clip(0, periods - 1)
    # ratings before the window: one bucket (-1) per rater, not one per old period
    rb = case((R.written_at < t0, -1), else_=_bucket(session, R.written_at, t0, width)).label("b")
    rated = pd.DataFrame(
        session.execute(
            select(rb, R.user_id, func.count()).where(R.written_at <= t1).group_by(rb, R.user_id)
        ).all(),
        columns=["b", "user", "n"],
    )
    rated["b"] = rated["b"].astype(int).clip(-1, periods - 1)  # -1: stored before the first exposure
    per_user = rated[rated["b"] < 0].groupby("user")["n"].sum()
    out = []
    for k in range(periods):
        now = rated[rated["b"] == k].groupby("user")["n"].sum()
        per_user = per_user.add(now, fill_value=0)
        now_shown = shown[shown["b"] == k]
        out.append(Period(
            start=store.iso(t0 + k * width), end=store.iso(t0 + (k + 1) * width),
            exposures=int(now_shown["n"].sum()), ratings=int(per_user.sum()),
            **(exposure_metrics(now_shown, catalogue) if len(now_shown) else {}),
            **signal_metrics(per_user.to_numpy()),
        ))  # fmt: skip
    return out


def _versions(session: Session, catalogue: int, since: float) -> list[VersionPoint]:
    E, R = store.Exposure, store.Rating
    shown = pd.DataFrame(
        session.execute(
            select(E.model_version, E.item_id, func.count())
            .where(E.shown_at >= since)
            .group_by(E.model_version, E.item_id)
        ).all(),
        columns=["version", "item", "n"],
    )
    out = []
    for v in store.versions(session)[-20:]:
        mine = shown[shown["version"] == v.id]
        per_user = np.array(
            session.scalars(
                select(func.count()).where(R.written_at <= v.trained_through).group_by(R.user_id)
            ).all()
        )
        out.append(VersionPoint(
            version=v.id, status=v.status, exposures=int(mine["n"].sum()), ratings=int(per_user.sum()),
            **(exposure_metrics(mine, catalogue) if len(mine) else {}),
            **signal_metrics(per_user),
        ))  # fmt: skip
    return out
