"""The API's routes read a request as written: what FastAPI would quietly accept is a 4xx naming
the field, never a guess.

- A JSON body with a key given twice in one object (JSON keeps the last: the sender meant one of
  them), a body that is not UTF-8 or nests too deeply (a 400 naming the problem, not "error parsing
  the body"), and a body sent as anything but ``application/json`` (415).
- A query parameter the route does not take (a typo would be ignored) or given twice (the last
  would win), and a number in the query or the path written any way but plainly: pydantic reads
  ``1_0``, ``+5``, `` 10`` and, for a whole number, ``5.0``.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from collabkit.files import clip_text
from collabkit.serve.deps import FieldError

_WHOLE = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


class StrictRoute(APIRoute):
    """An API route that checks its query string, path numbers and body text before FastAPI."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        params = list(_params(self.dependant))
        query = {p.alias for where, p in params if where == "query"}
        numbers = {(where, p.alias): form for where, p in params
                   if (form := _number_form(p.field_info.annotation)) is not None}  # fmt: skip
        takes_body = self.body_field is not None

        async def strict(request: Request) -> Response:
            seen: set[str] = set()
            for name, _ in request.query_params.multi_items():
                if name not in query:
                    name = clip_text(name, 60)
                    takes = ", ".join(sorted(query)) or "no query parameters"
                    raise FieldError(422, f"query.{name}", f"query.{name}: this route takes no parameter {name!r} (it takes {takes})")
                if name in seen:
                    raise FieldError(422, f"query.{name}", f"query.{name}: given twice; give it once")
                seen.add(name)
            for (where, name), form in numbers.items():
                raw = (request.query_params if where == "query" else request.path_params).get(name)
                if raw is not None and not form.fullmatch(raw):
                    kind = "a whole number" if form is _WHOLE else "a number"
                    raise FieldError(422, f"{where}.{name}", f"{where}.{name}: {clip_text(repr(raw), 60)} is not written as {kind} (digits, e.g. 10)")
            if takes_body and _has_body(request):
                kind = request.headers.get("content-type")
                if kind is None or kind.split(";")[0].strip().lower() != "application/json":
                    given = "none given" if kind is None else f"not {clip_text(repr(kind), 60)}"
                    raise FieldError(415, "content-type", f"content-type: send the body as JSON (application/json), {given}")
            return await handler(StrictJSON(request.scope, request.receive))

        return strict


class StrictJSON(Request):
    """A request whose JSON body refuses repeated keys and names what else is wrong with it."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            try:
                self._json = json.loads(raw.decode("utf-8"), object_pairs_hook=_once)
            except UnicodeDecodeError as e:
                raise FieldError(400, "body", f"body: byte {e.start} is not valid UTF-8; send JSON as UTF-8 text") from e
            except RecursionError as e:
                raise FieldError(400, "body", "body: the JSON nests too deeply") from e
            except json.JSONDecodeError:
                raise  # FastAPI's 422 names the position (app._invalid says what was expected)
            except ValueError as e:  # e.g. an integer of thousands of digits
                raise FieldError(400, "body", f"body: {e}") from e
        return self._json


def _params(dependant: Dependant) -> Any:
    """(where, field) of every query and path parameter of a route and its dependencies."""
    yield from (("query", p) for p in dependant.query_params)
    yield from (("path", p) for p in dependant.path_params)
    for sub in dependant.dependencies:
        yield from _params(sub)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() not in ("", "0"))


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise FieldError(422, f"body.{key}", f"body.{key}: given twice in one object; give it once")
        found[key] = value
    return found


def _number_form(annotation: Any) -> re.Pattern[str] | None:
    """The pattern a number of this annotation's type must match (None: not a number)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _number_form(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        forms = {_number_form(a) for a in typing.get_args(annotation) if a is not type(None)}
        return forms.pop() if len(forms) == 1 else None
    if annotation is int:
        return _WHOLE
    if annotation is float:
        return _NUMBER
    return None
