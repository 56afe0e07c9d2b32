"""FastAPI dependencies: a database session per request, the served model, API-key roles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from collabkit.serve.security import allows, key_role

if TYPE_CHECKING:
    from collabkit.serve.engine import Engine

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: <key>")


class FieldError(HTTPException):
    """A 4xx naming the request field at fault (the error body's ``field``)."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(status, message)
        self.field = field


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


DB = Annotated[Session, Depends(get_session)]


async def served(request: Request) -> Engine:
    """The live model snapshot for this request (503 while there is none). Async: it only reads
    memory, so it runs on the event loop instead of costing a thread hop."""
    current = request.app.state.live.current
    if current is None:
        raise HTTPException(
            503, "no live model version yet: promote one (collabkit models promote)"
        )
    return current


Model = Annotated[Any, Depends(served)]  # an Engine (typed loosely: torch loads lazily)


def _check(session: Session, given: str | None, role: str) -> str:
    if not given:
        raise HTTPException(401, "this endpoint needs an API key: Authorization: Bearer <key>")
    found = key_role(session, given)
    if found is None:
        raise HTTPException(401, "invalid API key")
    if not allows(found, role):
        raise HTTPException(403, f"a {found} key may not do this: it needs {role}")
    return found


def require(role: str) -> Callable[..., Any]:
    """A dependency that lets the request through only with a key of ``role`` (or higher).
    Async: the key's lookup is one indexed query, run on the event loop (no thread hop)."""

    async def check(
        request: Request,
        auth: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
        key: Annotated[str | None, Security(header)] = None,
    ) -> str:
        with Session(request.app.state.engine) as session:
            return _check(session, auth.credentials if auth is not None else key, role)

    return check


async def reader(request: Request) -> str:
    """Reads are open unless COLLABKIT_READ_KEY=true; then any valid key (same headers) will do.
    Async: an open read costs no thread hop; a key is checked in the thread pool (a query).

    Not declared as a security scheme in the OpenAPI document, which describes the default.
    """
    if not request.app.state.settings.read_key:
        return "reader"
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    given = credentials if scheme.lower() == "bearer" else request.headers.get("x-api-key")

    def check() -> str:
        with Session(request.app.state.engine) as session:
            return _check(session, given, "reader")

    return await run_in_threadpool(check)


Reader = Depends(reader)
Writer = Depends(require("writer"))
Admin = Depends(require("admin"))
