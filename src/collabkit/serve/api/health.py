"""Liveness, readiness and Prometheus metrics (outside /v1: they describe the process)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers and a live model is loaded."""
    state, problems = request.app.state, []
    try:
        with Session(state.engine) as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        problems.append("store unreachable")
    version = state.live.version
    if version is None:
        problems.append("no live model version")
    body = {
        "status": "ready" if not problems else "not ready",
        "model_version": version,
        "problems": problems,
    }
    return JSONResponse(body, status_code=503 if problems else 200)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    m = request.app.state.metrics
    m.model_version.set(request.app.state.live.version or 0)
    return Response(m.exposition(), media_type=CONTENT_TYPE_LATEST)
