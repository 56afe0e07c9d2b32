"""A hostile client against every endpoint: ids that are not UTF-8, numeric-looking ids, NUL,
10 MB bodies, values off the scale or not finite, unknown items, negative or huge sizes.

Every answer is a 4xx with a JSON error (or, for a valid request such as a numeric-looking id, a
2xx or 404), never a 5xx; nothing is stored; and the server starts again cleanly afterwards.
Requests carry an admin key, so every endpoint is reached past authentication.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collabkit.serve import create_app, store

BAD_IDS = ["%FF", "%FE%FF", "a%FFb", "%C0%AF", "%ED%A0%80", "%00", "a%00b", "%0A", "%7F", "x" * 65]
NUMERIC_IDS = ["5e1", "1e400", "NaN", "-0", "inf", "0x10", "1_000", "101.0", "0101"]
BAD_INTS = ["-1", "0", "1e400", "99999999999999999999", "NaN", "1.5", "%FF", "%00"]
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]  # JSON literals Python accepts
OFF_SCALE = [7, 0, -1, 5.5, 999999, -999999, 1e6, 1e308]
NOT_NUMBERS = ['"5"', "true", "null", "[]", "{}"]
TABLES = (store.Rating, store.User, store.Item, store.ModelVersion, store.RetrainJob, store.Canary,
          store.ApiKey, store.Fact, store.AlertThreshold)  # fmt: skip


def snapshot(url: str) -> dict[str, int]:
    """Rows per table (the exposure log is left out: it records answers, which valid reads get)."""
    engine = store.make_engine(url)
    with Session(engine) as s:
        counts = {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in TABLES}
    engine.dispose()
    return counts


class Hostile:
    """Sends requests and keeps every answer that broke the rules."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers, self.sent, self.broken = client, headers, 0, []
        self.reached: set[tuple[str, str]] = set()

    def send(self, method: str, path: str, *, route: tuple[str, str] | None = None, ok: tuple[int, ...] = (),
             body: Any = None, raw: bytes | None = None, query: str = "", ctype: str = "application/json") -> int:  # fmt: skip
        headers = {**self.headers, "content-type": ctype}
        content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        url = path + (f"?{query}" if query else "")
        r = self.client.request(method, url, content=content, headers=headers)
        self.sent += 1
        if route:
            self.reached.add(route)
        error = None
        if r.status_code >= 500:
            error = "5xx"
        elif r.status_code >= 400:
            try:
                if "error" not in r.json():
                    error = "no error field"
            except ValueError:
                error = "not JSON"
        elif r.status_code not in ok:
            error = "accepted"
        if error:
            self.broken.append((error, method, url, (raw or content or b"")[:80], r.status_code, r.text[:200]))
        return r.status_code


def fill(template: str, value: str, params: dict[str, str]) -> str:
    """``template`` with every path parameter set to a valid value, and ``value`` in the first."""
    names = re.findall(r"{(\w+)}", template)
    out = template
    for k, name in enumerate(names):
        out = out.replace("{" + name + "}", value if k == 0 else params.get(name, "101"))
    return out


VALID = {"user": "1", "item": "101", "version": "1", "job": "1"}


def bodies(path: str) -> list[Any]:
    """Hostile JSON bodies, by endpoint."""
    rating = {"user": "h", "item": "101", "value": 3}
    if path == "/v1/ratings":
        out = [{"ratings": [{**rating, "value": v}]} for v in OFF_SCALE]
        out += [{"ratings": [{**rating, k: bad}]} for k in ("user", "item")
                for bad in ("", "a\x00b", "x" * 65, "\n", 50, None, ["a"])]  # fmt: skip
        out += [{"ratings": [rating, {**rating, "user": "h2", "value": 9}]}, {"ratings": []}, {"ratings": None},
                {"ratings": [{**rating, "timestamp": -1}]}, {"ratings": [{**rating, "extra": 1}]}]  # fmt: skip
        return out
    if path == "/v1/users/{user}/ratings/{item}":
        return [{"value": v} for v in OFF_SCALE] + [{"value": 3, "timestamp": 1e12}, {}]
    if path == "/v1/users":
        answer = {"item": "101", "rating": 4}
        out = [{"user": "h", "answers": [{**answer, "item": i}]} for i in ["nope", *NUMERIC_IDS]]
        out += [{"user": "h", "answers": [{**answer, "rating": v}]} for v in OFF_SCALE]
        out += [{"user": "h", "answers": [answer], "n": n} for n in (-1, 0, 101, 10**12, 1.5, "10")]
        out += [{"user": "h", "answers": [answer, answer]}, {"user": "a\x00b"}, {"user": "1"}, {"user": ""},
                {"answers": [answer] * 1001}]  # fmt: skip
        return out
    if path == "/v1/models/retrain":
        return [{"spec": s} for s in ("dot-bias(n_factors=2000000)", "dot-bias(n_factors=-1)", "dot-bias(epochs=1e400)",
                                      "__import__('os').system('x')", "nope", "dot-bias(", "auto", "")] + [
                {"spec": "dot-bias", "holdout": h} for h in (0, 1, -1)] + [{"spec": "dot-bias", "tolerance": -1}]  # fmt: skip
    if path == "/v1/models/{version}/canary":
        return [{"fraction": f} for f in (0, 1, -1, 2)] + [{"min_rated": 0}, {"tolerance": -1}, {"extra": 1}]
    if path == "/v1/monitor/thresholds":
        return [{"gini": v} for v in (-1, 2, "x")] + [{"unknown": 0.5}]
    return [{}]


def number_body(path: str, literal: str) -> str:
    """A body of ``path`` whose number is ``literal`` (written into the JSON as it is)."""
    if path == "/v1/ratings":
        return '{"ratings": [{"user": "u", "item": "101", "value": ' + literal + "}]}"
    if path.endswith("/ratings/{item}"):
        return '{"value": ' + literal + "}"
    return '{"fraction": ' + literal + ', "tolerance": ' + literal + "}"


@pytest.fixture
def hostile(api) -> Hostile:
    return Hostile(api.client, api.admin)


def test_every_endpoint_refuses_hostile_input(api, hostile):
    before = snapshot(api.url)
    spec = api.client.app.openapi()
    operations = [(path, method.upper()) for path, ops in spec["paths"].items() for method in ops]
    big = b'{"ratings": [' + b'{"user": "u", "item": "101", "value": 3},' * 260_000 + b'{"user": "u", "item": "101", "value": 3}]}'
    assert len(big) > 10_000_000
    for path, method in operations:
        route = (path, method)
        params = re.findall(r"{(\w+)}", path)
        ints = [p for p in params if p in ("version", "job")]
        has_body = "requestBody" in spec["paths"][path][method.lower()]
        valid_body = {"value": 3} if path.endswith("/ratings/{item}") else {}
        if params:  # ids that are not ids: 4xx (400 for bytes that are not UTF-8), before anything runs
            for bad in BAD_INTS if ints else BAD_IDS:
                hostile.send(method, fill(path, bad, VALID), route=route, body=valid_body if has_body else None)
            if not ints:  # numeric-looking ids are valid ids: any answer but a 5xx, nothing written
                reads = (200, 404) if method == "GET" else (404,)
                for odd in NUMERIC_IDS:
                    hostile.send(method, fill(path, odd, VALID), route=route, ok=reads,
                                 body={"value": 7} if has_body else None)  # off the scale: nothing stored
        concrete = fill(path, VALID[params[0]], VALID) if params else path
        # refused before routing, whatever the endpoint: a query that is not UTF-8, a 10 MB body
        hostile.send(method, concrete, route=route, query="x=%FF")
        hostile.send(method, concrete, route=route, raw=big)
        for q in spec["paths"][path][method.lower()].get("parameters", []):
            if q["in"] != "query":
                continue
            kind = q["schema"].get("type")
            numbers = [b for b in BAD_INTS if kind == "integer" or b != "1.5"] + ["abc", ""]
            for bad in numbers if kind in ("integer", "number") else ["%FF", "%00", "x" * 201, ""]:
                ok = (200,) if q["name"] == "after" and bad in ("",) else ()
                hostile.send(method, concrete, route=route, query=f"{q['name']}={bad}", ok=ok,
                             body=valid_body if has_body and method != "GET" else None)  # fmt: skip
        if has_body:
            for body in bodies(path):
                hostile.send(method, concrete, route=route, body=body)
            for literal in BAD_NUMBERS + NOT_NUMBERS:  # JSON that is not a finite number where one goes
                hostile.send(method, concrete, route=route, raw=number_body(path, literal).encode())
            for raw in (big, b'{"user": "\xff\xfe"}', b"\xef\xbb\xbf{", b"{not json", b"[" * 50_000, b"null", b"1e400",
                        b'{"user": "\\udcff"}', b"", b'"' + b"a" * 100 + b'"'):  # fmt: skip
                hostile.send(method, concrete, route=route, raw=raw)
            hostile.send(method, concrete, route=route, raw=b'{"value": 3}', ctype="text/plain")
    for path in ("/vendor/swagger-ui/%FF", "/vendor/swagger-ui/..%2F..%2Fetc%2Fpasswd", "/static/%00",
                 "/static/..%2F..%2Fsettings.py", "/%FF", "/v1/%00"):  # fmt: skip
        hostile.send("GET", path)
    missed = set(operations) - hostile.reached
    assert not missed, missed
    assert hostile.sent > 500
    assert not hostile.broken, "\n".join(map(str, hostile.broken[:10]))
    assert snapshot(api.url) == before  # nothing stored
    settings = api.client.app.state.settings
    with TestClient(create_app(settings)) as again:  # and the server starts again cleanly
        assert again.get("/readyz").status_code == 200
        assert again.get("/v1/users/1/recommendations").status_code == 200
