"""Liveness, readiness and Prometheus metrics (outside /v1: they describe the process)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from collabkit.serve import store
from collabkit.serve.deps import Reader
from collabkit.serve.strict import StrictRoute

router = APIRouter(tags=["health"], route_class=StrictRoute)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers and a live model is loaded. ``model_version`` is the version
    this process serves; ``live_version`` the store's, and ``load_error`` why they differ."""
    state, problems, live = request.app.state, [], None
    try:
        with Session(state.engine) as session:
            found = store.live_version(session)
            live = found.id if found is not None else None
    except SQLAlchemyError:
        problems.append("store unreachable")
    version = state.live.version
    if version is None:
        problems.append("no live model version" + (f": {state.live.error}" if state.live.error else ""))
    body = {
        "status": "ready" if not problems else "not ready",
        "model_version": version,
        "live_version": live,
        "load_error": state.live.error,
        "problems": problems,
    }
    return JSONResponse(body, status_code=503 if problems else 200)


@router.get("/metrics", response_class=Response, dependencies=[Reader])
def metrics(request: Request) -> Response:
    """Prometheus text format (needs a key when reads do: COLLABKIT_READ_KEY=true)."""
    m = request.app.state.metrics
    m.model_version.set(request.app.state.live.version or 0)
    return Response(m.exposition(), media_type=CONTENT_TYPE_LATEST)
