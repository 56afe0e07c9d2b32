"""Schemathesis against the OpenAPI document of a real server (SQLite and PostgreSQL stores):
generated requests (valid and invalid) never get a 5xx, and every response matches the schema.

Requests carry an admin key, so the write and admin endpoints are exercised past authentication.
All of schemathesis' default checks run (server errors, response schema, status codes, content
types, headers, negative data rejected, auth not ignored, ...) except ``positive_data_acceptance``:
a schema-valid answer about an item the live model does not know is refused with a 422 naming
the field, which that check counts as a failure.
"""

from __future__ import annotations

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from collabkit.serve import Settings
from tests.serve.conftest import empty_store, load_store, make_key
from tests.serve.test_rollout import Running


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory, tiny_data, tiny_model):
    url = empty_store(request.param, tmp_path_factory.mktemp("st"), request)
    load_store(url, tiny_data)
    key = make_key(url, "admin")
    # retrain_memory_mb=1: every generated retraining is refused up front (422) instead of
    # starting a process each (test_api and test_findings run real jobs)
    settings = Settings(db=url, model=str(tiny_model), reload_seconds=0, retrain_memory_mb=1)
    with Running(settings) as base:
        yield base, {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_api_conforms(served):
    """Every operation, 25 generated cases each (schemathesis' pytest loader does not run under
    this pytest, so the operations' Hypothesis strategies are driven directly)."""
    base, headers = served
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=25, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
        def check(case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
    metrics = httpx.get(f"{base}/metrics").text
    served_requests = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
        if line.startswith("collabkit_request_seconds_count")
    )  # fmt: skip
    assert served_requests >= 10 * len(operations)  # the cases really reached the server
    assert 'status="5' not in metrics
