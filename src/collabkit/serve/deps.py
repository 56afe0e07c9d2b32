"""FastAPI dependencies: a database session per request, the served model, API-key roles."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from collabkit.serve import store
from collabkit.serve.security import allows, key_role
from collabkit.serve.validation import UNRECORDED, Scale

if TYPE_CHECKING:
    from collabkit.serve.engine import Engine

#: seconds a worker trusts what it looked up once: a valid key's role and the store's recorded
#: scale. A write then costs no query before its commit (on PostgreSQL each one is a round trip
#: on the event loop). Keys are never revoked in place; a scale replaced by `collabkit db scale`
#: reaches every worker within this time.
TRUSTED_FOR = 1.0

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


class Recent:
    """What this worker looked up in the store in the last ``TRUSTED_FOR`` seconds."""

    def __init__(self) -> None:
        self.roles: dict[str, tuple[str, float]] = {}  # key -> (role, until); valid keys only
        self.scale: tuple[Scale, float] | None = None  # a recorded scale only

    def role(self, request: Request, given: str) -> str | None:
        """The role of key ``given`` (None: not a key), from memory or one query."""
        now = time.monotonic()
        hit = self.roles.get(given)
        if hit is not None and hit[1] > now:
            return hit[0]
        with Session(request.app.state.engine) as session:
            found = key_role(session, given)
        if found is not None:
            if len(self.roles) > 10_000:  # many keys in turn: start afresh rather than grow
                self.roles.clear()
            self.roles[given] = (found, now + TRUSTED_FOR)
        return found

    def store_scale(self, session: Session) -> Scale:
        """The store's scale, from memory or one query (an unrecorded one is asked again)."""
        now = time.monotonic()
        if self.scale is not None and self.scale[1] > now:
            return self.scale[0]
        found = store.scale(session)
        self.scale = None if found == UNRECORDED else (found, now + TRUSTED_FOR)
        return found


def _check(request: Request, given: str | None, role: str) -> str:
    if not given:
        raise HTTPException(401, "this endpoint needs an API key: Authorization: Bearer <key>")
    found = request.app.state.recent.role(request, given)
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
        return _check(request, auth.credentials if auth is not None else key, role)

    return check


def _given_key(request: Request) -> str | None:
    """The key a request carries (Authorization: Bearer, else X-API-Key), if any."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials if scheme.lower() == "bearer" else request.headers.get("x-api-key")


async def key_holder(request: Request) -> str | None:
    """The role of the key the request carries; None without one or with one that is not valid.
    It refuses nothing: endpoints open to readers use it to show admins more."""
    given = _given_key(request)
    return request.app.state.recent.role(request, given) if given else None


async def reader(request: Request) -> str:
    """Reads are open unless COLLABKIT_READ_KEY=true; then any valid key (same headers) will do.
    Async: no thread hop; a key is checked like a writer's (``Recent``).

    Not declared as a security scheme in the OpenAPI document, which describes the default.
    """
    if not request.app.state.settings.read_key:
        return "reader"
    return _check(request, _given_key(request), "reader")


Reader = Depends(reader)
KeyHolder = Annotated[str | None, Depends(key_holder)]
Writer = Depends(require("writer"))
Admin = Depends(require("admin"))
