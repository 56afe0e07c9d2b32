"""Model versions: list them; promote one or roll back to the previous live one (admin)."""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import APIRouter, Path, Request

from collabkit.serve import store
from collabkit.serve.deps import DB, Admin, FieldError, Reader
from collabkit.serve.schemas import ERRORS, V1, RetrainIn, RetrainOut, VersionOut

log = logging.getLogger("collabkit.serve")
router = APIRouter(prefix=V1, tags=["models"], responses=ERRORS)


def _out(v: store.ModelVersion) -> VersionOut:
    return VersionOut(
        id=v.id, path=v.path, spec=v.spec, status=v.status, metrics=v.metrics or {},
        created_at=store.iso(v.created_at), promoted_at=store.iso(v.promoted_at),
    )  # fmt: skip


@router.get("/models", dependencies=[Reader])
def list_versions(session: DB) -> list[VersionOut]:
    """Every model version, oldest first, with its metrics and status."""
    return [_out(v) for v in store.versions(session)]


@router.post("/models/{version}/promote", dependencies=[Admin])
def promote(version: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request) -> VersionOut:
    """Load ``version`` fully, then make it live (the old one retires); requests never fail meanwhile."""
    return _activate(request, version)


@router.post("/models/rollback", dependencies=[Admin])
def rollback(request: Request, session: DB) -> VersionOut:
    """Make the previously live version live again."""
    previous = store.previous_version(session)
    if previous is None:
        raise FieldError(409, "version", "no earlier live version to roll back to")
    session.close()
    return _activate(request, previous.id)


@router.post("/models/retrain", status_code=202, dependencies=[Admin])
def retrain(body: RetrainIn, request: Request) -> RetrainOut:
    """Train a candidate from the store in the background and gate it (``collabkit retrain``);
    it goes live only if not worse than the live model. Watch ``GET /v1/models`` for the result."""
    state = request.app.state
    lock: threading.Lock = state.retrain_lock
    if not lock.acquire(blocking=False):
        raise FieldError(409, "spec", "a retraining is already running")

    def run() -> None:
        from collabkit.serve.rollout import retrain as gated

        try:
            result = gated(
                state.engine, state.settings.models_dir, body.spec, body.holdout, body.tolerance
            )
            if result["promoted"]:
                state.live.sync()
        except Exception:
            log.exception("retraining failed")
        finally:
            lock.release()

    threading.Thread(target=run, name="retrain", daemon=True).start()
    return RetrainOut(status="started")


def _activate(request: Request, version: int) -> VersionOut:
    try:
        done = request.app.state.live.activate(version)
    except LookupError:
        raise FieldError(404, "version", f"no model version {version}") from None
    except (OSError, ValueError, KeyError) as e:
        raise FieldError(409, "version", f"model version {version} does not load: {e}") from None
    request.app.state.metrics.model_version.set(done.id)
    return _out(done)
