"""What FastAPI and pydantic would quietly accept is refused with a 4xx naming the field: repeated
JSON keys, unknown, repeated or loosely written query parameters, loosely written path numbers,
bodies that are not JSON, ids that could never be read back, ratings from the future, NaN."""

from __future__ import annotations

import time

import pytest

USER = "/v1/users/1/recommendations"


def refused(r, status: int, field: str, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body.get("field") == field, body
    assert all(w in body["error"] for w in words), body["error"]
    assert "Traceback" not in r.text and "^[" not in body["error"]  # words, not a regex


def test_a_json_key_given_twice_is_refused_not_resolved(api):
    raw = b'{"ratings": [{"user": "p1", "item": "101", "value": 5, "value": 2}]}'
    r = api.client.post("/v1/ratings", content=raw, headers={**api.writer, "content-type": "application/json"})
    refused(r, 422, "body.value", "given twice")
    assert not api.client.get("/v1/users/p1/ratings", headers=api.writer).json()["ratings"]  # nothing stored
    r = api.client.put("/v1/monitor/thresholds", content=b'{"gini": 0.5, "gini": null}',
                       headers={**api.admin, "content-type": "application/json"})  # fmt: skip
    refused(r, 422, "body.gini", "given twice")


@pytest.mark.parametrize(
    "query, field, words",
    [("n=10&n=2", "query.n", ("given twice",)), ("nn=5", "query.nn", ("no parameter 'nn'", "it takes")),
     ("n=1_0", "query.n", ("'1_0'", "whole number")), ("n=%2B5", "query.n", ("'+5'",)),
     ("n=%2010", "query.n", ("' 10'",)), ("n=5.0", "query.n", ("'5.0'",))],
)  # fmt: skip
def test_query_parameters_are_read_as_written(api, query, field, words):
    refused(api.client.get(f"{USER}?{query}"), 422, field, *words)


def test_plain_numbers_still_pass(api):
    r = api.client.get(f"{USER}?n=3")
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    assert api.client.get("/v1/monitor?hours=1.5", headers=api.admin).status_code == 200


def test_path_numbers_are_read_as_written(api):
    refused(api.client.post("/v1/models/1.0/promote", headers=api.admin), 422, "path.version", "'1.0'")


def test_nan_is_not_a_number_in_a_query_or_a_body(api):
    refused(api.client.get("/v1/monitor?hours=NaN", headers=api.admin), 422, "query.hours", "'NaN' is not written as a number")
    r = api.client.post("/v1/models/1/canary", content=b'{"fraction": NaN}', headers={**api.admin, "content-type": "application/json"})
    refused(r, 422, "body.fraction", "finite")


def test_a_body_that_is_not_json_gets_415_and_broken_json_says_where(api):
    body = b'{"ratings": [{"user": "p1", "item": "101", "value": 5}]}'
    refused(api.client.post("/v1/ratings", content=body, headers={**api.writer, "content-type": "text/plain"}),
            415, "content-type", "application/json", "text/plain")  # fmt: skip
    refused(api.client.post("/v1/ratings", content=body, headers=api.writer), 415, "content-type", "none given")
    json_ = {**api.writer, "content-type": "application/json"}
    refused(api.client.post("/v1/ratings", content=body[:20], headers=json_), 422, "body", "not valid JSON at character")
    refused(api.client.post("/v1/ratings", content=b'{"ratings": "\xff"}', headers=json_), 400, "body", "UTF-8")
    refused(api.client.post("/v1/ratings", content=b"[" * 100_000 + b"]" * 100_000, headers=json_), 400, "body", "nests")


def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_host_header(api):
    r = api.client.get("/v1/models/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers


@pytest.mark.parametrize(
    "user, words",
    [("a/b", ("'/'",)), ("a\u0085", ("invisible",)), ("\ufeff50", ("invisible",)), ("50\u200b", ("invisible",)),
     ("\u202eevil", ("invisible",)), (" 50", ("start or end", "blank")), ("50\u3000", ("start or end",))],
)  # fmt: skip
def test_ids_that_could_never_be_read_back_or_look_like_others_are_refused(api, user, words):
    r = api.client.post("/v1/ratings", json={"ratings": [{"user": user, "item": "101", "value": 4}]}, headers=api.writer)
    refused(r, 422, "body.ratings.0.user", *words)


def test_ids_with_blanks_at_either_end_are_refused_in_paths_and_inner_blanks_are_kept(api):
    """Files' ids are read stripped: " 50" could never meet its ratings in an imported file."""
    r = api.client.put("/v1/users/%2050/ratings/101", json={"value": 4}, headers=api.writer)
    refused(r, 422, "path.user", "start or end")
    r = api.client.put("/v1/users/a%20b/ratings/101", json={"value": 4}, headers=api.writer)
    assert r.status_code == 200, r.text
    assert api.client.get("/v1/items", params={"q": " star"}).status_code == 200  # search text may hold blanks


def test_a_rating_from_the_future_is_refused(api):
    later = time.time() + 30 * 86_400
    r = api.client.put("/v1/users/p2/ratings/101", json={"value": 4, "timestamp": later}, headers=api.writer)
    refused(r, 422, "body.timestamp", "in the future")
    r = api.client.put("/v1/users/p2/ratings/101", json={"value": 4, "timestamp": time.time() + 60}, headers=api.writer)
    assert r.status_code == 200, r.text  # a clock a minute ahead is no future

