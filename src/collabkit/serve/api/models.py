"""Model versions: list them; promote one or roll back (admin); retrain jobs; the canary.

A version becomes live (or a canary) only after it has loaded and answered a smoke request
(``rollout.checked_load``); otherwise 409 with the reason, and what is live stays live.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from collabkit.serve import canary, jobs, store
from collabkit.serve.deps import DB, Admin, FieldError, KeyHolder, Reader
from collabkit.serve.rollout import NotServable
from collabkit.serve.schemas import ERRORS, V1, JobOut, RetrainIn, Strict, VersionOut
from collabkit.serve.security import allows
from collabkit.serve.strict import StrictRoute

router = APIRouter(prefix=V1, tags=["models"], responses=ERRORS, route_class=StrictRoute)
VersionId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Row = TypeVar("Row")


def _out(v: store.ModelVersion, running: store.Canary | None = None, admin: bool = True) -> VersionOut:
    """A version as the API shows it; its folder's full path only to an ``admin``."""
    fraction = running.fraction if running is not None and running.version == v.id else None
    return VersionOut(
        id=v.id, name=PurePath(v.path).name, path=v.path if admin else None, spec=v.spec, status=v.status,
        metrics=v.metrics or {},
        created_at=store.iso(v.created_at), promoted_at=store.iso(v.promoted_at), canary=fraction,
    )  # fmt: skip


@router.get("/models", dependencies=[Reader])
def list_versions(session: DB, role: KeyHolder) -> list[VersionOut]:
    """Every model version, oldest first, with its metrics and status (and canary share); the
    folders' paths on the server only to an admin key."""
    running = canary.running(session)
    return [_out(v, running, allows(role, "admin")) for v in store.versions(session)]


@router.post("/models/rollback", dependencies=[Admin])
def rollback(request: Request, session: DB) -> VersionOut:
    """Make the previously live version live again (after it loads and answers)."""
    previous = _needed(store.previous_version(session), "version", "no earlier live version to roll back to")
    session.close()
    return _activate(request, previous.id, "rolled back")


def _needed(row: Row | None, field: str, problem: str) -> Row:
    """``row``, or a 409 naming ``field`` when there is none."""
    if row is None:
        raise FieldError(409, field, problem)
    return row


def _activate(request: Request, version: int, retire_as: str = "retired") -> VersionOut:
    try:
        done = request.app.state.live.activate(version, retire_as)
    except LookupError:
        raise FieldError(404, "version", f"no model version {version}") from None
    except NotServable as e:  # the live version stays as it is
        raise FieldError(409, "version", str(e)) from None
    request.app.state.metrics.model_version.set(done.id)
    return _out(done)


def _is_canary(request: Request, version: int) -> bool:
    current = request.app.state.canary.current
    return current is not None and current.version == version


# --- retraining: a job in its own process ---------------------------------------------------------
def _job(j: store.RetrainJob, admin: bool = True) -> JobOut:
    """A job as the API shows it; the trained folder's path (``result.path``) only to an ``admin``."""
    result = dict(j.result or {})
    if not admin and result.get("path") is not None:
        result["path"] = None
    return JobOut(
        id=j.id, spec=j.spec, status=j.status, reason=j.reason, version=j.version, result=result,
        estimate_mb=round(j.estimate_bytes / 2**20, 1), limit_mb=round(j.limit_bytes / 2**20, 1),
        created_at=store.iso(j.created_at), started_at=store.iso(j.started_at), finished_at=store.iso(j.finished_at),
    )  # fmt: skip


@router.post("/models/retrain", status_code=202, dependencies=[Admin])
def retrain(body: RetrainIn, request: Request) -> JobOut:
    """Queue a retraining (``collabkit retrain``, gated) to run in its own process: answered once
    the spec is checked and the memory it needs estimated. A spec that does not build, or needs
    more memory than COLLABKIT_RETRAIN_MEMORY_MB, is refused (422); so is ``incremental`` when
    the live model cannot update. Follow the job at ``GET /v1/models/retrain/{job}``; it goes
    live only if the gate promotes it."""
    state = request.app.state
    try:
        spec = jobs.check_spec(body.spec)
        shape = jobs.store_shape(state.engine)
        need = jobs.estimate_bytes(spec, shape, jobs.live_bytes(state.engine))
    except ValueError as e:
        raise FieldError(422, "body.spec", f"body.spec: {e}") from None
    if body.incremental:
        try:
            jobs.check_incremental(state.engine)
        except (ValueError, FileNotFoundError) as e:
            raise FieldError(422, "body.incremental", f"body.incremental: {e}") from None
    limit = state.settings.retrain_memory_mb * 2**20
    if need > limit:
        raise FieldError(422, "body.spec", (
            f"body.spec: {body.spec} would need about {jobs.mb(need)} to train on this store "
            f"({shape['users']:,} users, {shape['items']:,} items, {shape['ratings']:,} ratings); "
            f"a retraining may use {jobs.mb(limit)} (COLLABKIT_RETRAIN_MEMORY_MB)"))  # fmt: skip
    try:
        options = {"holdout": body.holdout, "tolerance": body.tolerance, "incremental": body.incremental}
        job = state.jobs.submit(body.spec, options, need, limit)
    except LookupError as e:
        raise FieldError(409, "spec", str(e)) from None
    with Session(state.engine) as session:
        return _job(session.get(store.RetrainJob, job))


@router.get("/models/retrain", dependencies=[Reader])
def list_jobs(session: DB, role: KeyHolder, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[JobOut]:
    """The latest retraining jobs, newest first."""
    rows = session.scalars(select(store.RetrainJob).order_by(store.RetrainJob.id.desc()).limit(limit))
    return [_job(j, allows(role, "admin")) for j in rows]


@router.get("/models/retrain/{job}", dependencies=[Reader])
def job_status(job: VersionId, session: DB, role: KeyHolder) -> JobOut:
    """One retraining job: queued, running, failed (with the reason) or done (with the gate's record)."""
    row = session.get(store.RetrainJob, job)
    if row is None:
        raise FieldError(404, "job", f"no retraining job {job}")
    return _job(row, allows(role, "admin"))


# --- the canary ------------------------------------------------------------------------------------
class CanaryIn(Strict):
    fraction: float = Field(0.2, gt=0, lt=1, description="share of the users it serves (by user id)")
    tolerance: float = Field(0.1, ge=0, le=10, description="roll back when its mean rating is lower than live's by more")
    min_rated: int = Field(50, ge=1, le=10**7, description="rated recommendations each arm needs before the rule decides")


class CanaryOut(BaseModel):
    id: int
    version: int
    live_version: int
    fraction: float
    tolerance: float
    min_rated: int
    status: str = Field(description="running, promoted or rolled back")
    reason: str
    started_at: str | None
    ended_at: str | None


class CanaryReport(BaseModel):
    canary: CanaryOut | None = Field(description="the running canary, else the latest (null: never one)")
    arms: dict[str, dict] = Field(default_factory=dict, description="live and canary: their online figures")
    verdict: dict | None = Field(None, description="what the rule says now (running canary)")


def _canary(c: store.Canary) -> CanaryOut:
    return CanaryOut(
        id=c.id, version=c.version, live_version=c.live_version, fraction=c.fraction, tolerance=c.tolerance,
        min_rated=c.min_rated, status=c.status, reason=c.reason, started_at=store.iso(c.started_at),
        ended_at=store.iso(c.ended_at),
    )  # fmt: skip


@router.get("/models/canary", dependencies=[Reader])
def canary_report(request: Request, session: DB) -> CanaryReport:
    """The running canary (else the latest), both arms' online figures since it started, and
    the rule's verdict on them."""
    request.app.state.exposures.flush()
    row = canary.latest(session)
    if row is None:
        return CanaryReport(canary=None)
    f = canary.figures(session, [row.live_version, row.version], row.started_at)
    live, arm = f[row.live_version], f[row.version]
    found = canary.verdict(live, arm, row.tolerance, row.min_rated) if row.status == "running" else None
    return CanaryReport(canary=_canary(row), arms={"live": live.to_json(), "canary": arm.to_json()},
                        verdict=None if found is None else {"action": found.action, "reason": found.reason})  # fmt: skip


@router.post("/models/{version}/canary", status_code=201, dependencies=[Admin])
def start_canary(version: VersionId, body: CanaryIn, request: Request) -> CanaryOut:
    """Serve ``version`` to ``fraction`` of the users (chosen by user id) beside the live one,
    once it has loaded and answered; the rule then rolls it back or promotes it."""
    state = request.app.state
    try:
        row = canary.start(state.engine, version, body.fraction, body.tolerance, body.min_rated, state.live.load)
    except LookupError:
        raise FieldError(404, "version", f"no model version {version}") from None
    except (NotServable, ValueError) as e:
        raise FieldError(409, "version", str(e)) from None
    state.canary.sync()
    return _canary(row)


@router.post("/models/canary/promote", dependencies=[Admin])
def promote_canary(request: Request, session: DB) -> VersionOut:
    """Promote the running canary to every user (by hand)."""
    row = _needed(canary.running(session), "canary", "no canary is running")
    session.close()
    return promote(row.version, request)


@router.post("/models/canary/rollback", dependencies=[Admin])
def rollback_canary(request: Request) -> CanaryOut:
    """Stop the running canary (by hand): every user gets the live version again."""
    row = _needed(canary.end(request.app.state.engine, "rolled back", "by hand"), "canary", "no canary is running")
    request.app.state.canary.sync()
    return _canary(row)


@router.post("/models/{version}/promote", dependencies=[Admin])
def promote(version: VersionId, request: Request) -> VersionOut:
    """Load ``version`` and ask it for a list, then make it live (the old one retires); requests
    never fail meanwhile. Promoting the running canary's version ends the canary (promoted)."""
    done = _activate(request, version)
    ended = canary.end(request.app.state.engine, "promoted", "by hand") if _is_canary(request, version) else None
    if ended is not None:
        request.app.state.canary.sync()
    return done
