"""Retraining jobs: the spec check before the 202, the memory estimate, the runner's bookkeeping."""

from __future__ import annotations

import pytest
import torch
from sqlalchemy.orm import Session

from collabkit.models.base import registry
from collabkit.serve import jobs, store
from tests.conftest import make_ratings


@pytest.mark.parametrize("spec", ["dot-bias(n_factors=3", "dot-bias(epochs=-1)", "dot-bias(lr_max=1e400)",
                                  "dot-bias(n_factors=2.5)", "dot-bias(nfactors=3)", "auto", "nope"])  # fmt: skip
def test_bad_specs_are_refused_naming_the_problem(spec):
    with pytest.raises(ValueError, match="spec|auto|unknown model"):
        jobs.check_spec(spec)


@pytest.mark.parametrize("kind", sorted(set(registry()) - {"ensemble"}))
def test_the_meta_device_counts_what_a_real_model_holds(kind):
    """The estimate's model bytes (built on the meta device, nothing allocated) are those of the
    same model built for real; buffers sized by the number of ratings (``data_sized``) are
    the estimate's BYTES_PER_RATING, so they are left out here."""
    from collabkit.train.spec import build_untrained

    data = make_ratings(n_users=30, n_items=20, density=0.5)
    spec = jobs.check_spec(kind)
    real = build_untrained(spec, data)
    per_rating = set(real.data_sized)
    tensors = [*real.parameters(), *(b for n, b in real.named_buffers() if n not in per_rating)]
    held = sum(t.numel() * t.element_size() for t in tensors)
    levels = sorted(data.frame["rating"].unique().tolist())
    assert jobs.model_bytes(spec, data.n_users, data.n_items, levels) == held


def test_the_estimate_grows_with_the_store_and_the_model():
    spec = jobs.check_spec("dot-bias(n_factors=50)")
    small = {"users": 1000, "items": 500, "ratings": 10_000, "levels": [1.0, 5.0]}
    big = {**small, "users": 100_000, "ratings": 1_000_000}
    assert jobs.BASE_BYTES < jobs.estimate_bytes(spec, small) < jobs.estimate_bytes(spec, big)
    large = jobs.estimate_bytes(jobs.check_spec("dot-bias(n_factors=200000)"), small)
    assert large > 1500 * 200_000 * 4 * jobs.STATE_FACTOR  # weights alone: 1.2 GB, no memory touched
    with pytest.raises(ValueError, match="COLLABKIT_MAX_MODEL_BYTES"):  # past the library's limit
        jobs.estimate_bytes(jobs.check_spec("dot-bias(n_factors=2000000)"), small)
    assert torch.empty(0).device.type == "cpu"  # the meta device was only a context


def test_a_job_left_running_by_a_stopped_server_is_failed_at_start_up(db_url, tmp_path):
    engine = store.make_engine(db_url)
    with Session(engine) as s:
        job = store.RetrainJob(spec="dot-bias", options={}, status="running", reason="", estimate_bytes=0,
                               limit_bytes=0, result={}, pid=2**22 + 12345, created_at=store.now())  # fmt: skip
        s.add(job)
        s.commit()
        job_id = job.id
    runner = jobs.Runner(engine, db_url, str(tmp_path))
    runner.recover()
    with Session(engine) as s:
        row = s.get(store.RetrainJob, job_id)
        assert row.status == "failed" and "server stopped" in row.reason
    runner.close()
    engine.dispose()


def test_the_queue_is_bounded(db_url, tmp_path):
    engine = store.make_engine(db_url)
    runner = jobs.Runner(engine, db_url, str(tmp_path))
    runner.closed = True  # nothing starts: every job stays queued
    for _ in range(jobs.MAX_QUEUED):
        runner.submit("dot-bias", {}, 0, 0)
    with pytest.raises(LookupError, match="waiting already"):
        runner.submit("dot-bias", {}, 0, 0)
    engine.dispose()
