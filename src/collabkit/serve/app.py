"""The app factory: ``create_app(Settings(...))`` wires store, live model, exposure log and routers.

Errors are JSON ``{"error": ..., "field": ...}`` with a 4xx status naming what was wrong; anything
unexpected is logged here and answered with a bare 500, never a stack trace. No CORS headers are
sent (browsers on other origins are refused) unless a proxy adds them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from collabkit.serve import migrate
from collabkit.serve.api import (
    health,
    item_map,
    items,
    models,
    monitor,
    onboarding,
    ratings,
    recommendations,
    users,
)
from collabkit.serve.batching import Batcher
from collabkit.serve.canary import Canaries
from collabkit.serve.commits import Committer, writer_lock
from collabkit.serve.deps import Recent
from collabkit.serve.exposures import ExposureLog
from collabkit.serve.jobs import Runner
from collabkit.serve.live import Live
from collabkit.serve.metrics import Metrics
from collabkit.serve.settings import Settings
from collabkit.serve.store import make_engine
from collabkit.serve.validation import ID_PATTERN, TEXT_PATTERN, id_problem, utf8_problem
from collabkit.serve.web import pages

log = logging.getLogger("collabkit.serve")


def create_app(settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving ``settings.db`` (schema must be at head: ``collabkit db upgrade``)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.db)
        migrate.check(engine)
        app.state.engine = engine
        app.state.commits = Committer(engine)
        app.state.live = Live(engine, on_swap=app.state.metrics.model_version.set,
                              new_items=settings.new_item_ratings, new_item_seconds=settings.new_item_seconds,
                              ann_items=settings.ann_items)  # fmt: skip
        app.state.exposures = ExposureLog(
            engine, settings.exposure_buffer, settings.exposure_flush_seconds, writer_lock(engine)
        )
        if settings.model:
            from collabkit.serve.rollout import register

            register(engine, settings.model)
        app.state.live.sync()
        app.state.live.start_polling(settings.reload_seconds)
        app.state.exposures.start()
        app.state.canary = Canaries(engine, app.state.live, app.state.exposures.flush)
        app.state.canary.sync()
        app.state.canary.start_polling(settings.canary_seconds)
        app.state.jobs = Runner(engine, settings.db, settings.models_dir, on_done=lambda: (
            app.state.live.sync(), app.state.canary.sync()))  # fmt: skip
        app.state.jobs.recover()
        yield
        app.state.jobs.close()
        app.state.canary.stop()
        app.state.live.stop()
        app.state.commits.close()
        app.state.exposures.close()
        app.state.metrics.close()
        engine.dispose()

    app = FastAPI(
        title="collabkit", version="1",
        description="Ratings in, recommendations out: fold-in for new users, a measured model rollout.",
        lifespan=lifespan, docs_url=None, redoc_url=None,  # /docs: web.pages, offline
        redirect_slashes=False,  # "/v1/models/" is a 404, not a redirect built from the Host header
    )  # fmt: skip
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.batcher = Batcher()  # requests of one event-loop turn share an engine call
    app.state.recent = Recent()  # keys and the scale, trusted for a second (deps.TRUSTED_FOR)
    for module in (ratings, users, recommendations, items, onboarding, models, item_map, monitor):
        app.include_router(module.router)
    app.include_router(health.router)
    pages.mount(app)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # FastAPI's own and Starlette's (body parsing, static files)
    app.add_exception_handler(Exception, _crash)
    return Guard(app, settings.max_body_bytes, app.state.metrics)  # type: ignore[return-value]


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [_problem(e) for e in exc.errors()]
    first = problems[0] if problems else {"field": "", "problem": "invalid request"}
    return JSONResponse(
        {
            "error": f"{first['field']}: {first['problem']}",
            "field": first["field"],
            "problems": problems,
        },
        status_code=422,
    )


def _problem(e: dict[str, Any]) -> dict[str, str]:
    """One pydantic error as {field, problem}, in words rather than a regex or a character offset."""
    loc, msg, kind = tuple(e.get("loc", ())), e.get("msg", "invalid"), e.get("type")
    if kind == "json_invalid":  # loc is ("body", offset)
        where = f" at character {loc[-1]}" if len(loc) > 1 else ""
        return {"field": "body", "problem": f"not valid JSON{where}: {e.get('ctx', {}).get('error', msg)}"}
    if kind == "string_pattern_mismatch" and e.get("ctx", {}).get("pattern") in (ID_PATTERN, TEXT_PATTERN):
        msg = id_problem(e["input"]) or msg
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    return {"field": ".".join(str(p) for p in loc), "problem": msg}


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    body: dict[str, Any] = {"error": str(exc.detail)}
    if getattr(exc, "field", None):
        body["field"] = exc.field  # type: ignore[attr-defined]
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "internal error"}, status_code=500)


class Guard:
    """ASGI wrapper: refuses bodies over ``limit`` bytes (413) and times every request."""

    def __init__(self, app: FastAPI, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics
        self.state = app.state  # tests and the CLI reach the app's state through the wrapper

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        too_big = {"error": f"request body over {self.limit} bytes"}
        try:
            bad = _not_utf8(scope)
            if bad is not None:  # before routing: a path id must never become U+FFFD
                return await _send_json(sending, 400, bad)
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                return await _send_json(sending, 413, too_big)
            if length is None and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
                buffered = await self._buffered(receive)  # chunked: read it all, up to the limit
                if buffered is None:
                    return await _send_json(sending, 413, too_big)
                receive = buffered
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.latency.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - start
            )

    async def _buffered(self, receive: Receive) -> Receive | None:
        """A receive that replays the whole body at once, or None when it is over the limit."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return None
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def again() -> Message:
            return replay.pop() if replay else await receive()

        return again


def _not_utf8(scope: Scope) -> dict[str, str] | None:
    """The error body when the percent-decoded path or query string is not UTF-8, else None.

    The server decodes such bytes to U+FFFD, so two different ids (``%FE``, ``%FF``) would
    become one; they are refused instead.
    """
    parts = {"path": scope.get("raw_path") or scope["path"].encode(),
             "query": (scope.get("query_string") or b"").replace(b"+", b" ")}  # fmt: skip
    for field, raw in parts.items():
        problem = utf8_problem(unquote_to_bytes(raw))
        if problem is not None:
            return {"error": f"{field}: {problem}", "field": field}
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    import json

    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
