"""Retraining outside the request path: a job per request, run in its own process under a memory limit.

``POST /v1/models/retrain`` checks the spec (``check_spec``) and estimates the memory training it
on this store needs (``estimate_bytes``) before it answers 202; a spec that does not build, or
needs more than the limit (``COLLABKIT_RETRAIN_MEMORY_MB``), is refused up front with a 422. An
accepted job is a row of ``retrain_jobs``: queued -> running -> done | failed (with the reason).

The ``Runner`` in the server starts one job at a time as a child process,
``python -m collabkit.serve.jobs JOB``, which caps its own data segment (RLIMIT_DATA: heap and
private mappings, what training allocates) at the limit before it imports torch: an estimate that
was wrong makes the job fail with "out of memory", never the server. The child runs ``rollout.retrain`` (the gate) and writes the result;
the Runner notices the child's end, records a crash (a signal, say) as the reason, and tells the
server to load a newly promoted version.

The estimate, in bytes:  BASE + BYTES_PER_RATING * ratings + STATE_FACTOR * (candidate + live),
where candidate and live are the bytes of the models' parameters and buffers, counted by building
the candidate on PyTorch's meta device (no memory) with the store's numbers of users and items.
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import distinct, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from collabkit.files import process_alive
from collabkit.serve import store

log = logging.getLogger("collabkit.serve")

BASE_BYTES = 640 * 2**20  # a job process's data segment before its data: torch, pandas, collabkit (~430 MB measured)
BYTES_PER_RATING = 400  # the store's frame (ids as Python strings), its copies, the training arrays
STATE_FACTOR = 5  # weights, gradients, two Adam moments and a working copy (EASE: 20 bytes per 4-byte cell)
MAX_QUEUED = 10  # jobs waiting at most: more are refused (409) until some have run


# --- before the 202: the spec builds, and fits in memory ----------------------------------------
def check_spec(spec: str) -> Any:
    """Parse ``spec`` fully (the library's ``train.spec.check_spec``: syntax, kind, option names,
    types and ranges) and refuse ``auto``; ValueError naming the problem. ``estimate_bytes`` then
    builds the model itself, on the meta device."""
    from collabkit.train.spec import AUTO
    from collabkit.train.spec import check_spec as library_check

    parsed = library_check(spec)
    if parsed.kind == AUTO:
        raise ValueError("auto chooses its members while it trains, so its memory cannot be "
                         "estimated up front: name a kind or a preset")  # fmt: skip
    return parsed


def check_incremental(engine: Engine) -> None:
    """ValueError unless a version is live and its kind can update (UPDATE): an incremental
    retrain is refused before the 202."""
    from collabkit.checkpoint import read_config
    from collabkit.models.base import UPDATE, get_model_class, registry

    with Session(engine) as session:
        live = store.live_version(session)
    if live is None:
        raise ValueError("an incremental retrain updates the live model, and no version is live yet")
    kind = read_config(live.path)["kind"]
    if UPDATE not in get_model_class(kind).capabilities:
        can = sorted(k for k, cls in registry().items() if UPDATE in cls.capabilities)
        raise ValueError(f"the live model ({kind}) cannot be updated; kinds that can: {', '.join(can)}")


def store_shape(engine: Engine) -> dict[str, Any]:
    """What the estimate needs from the store: numbers of users, items, ratings; the rating levels."""
    R = store.Rating
    with Session(engine) as session:
        users, items, n = session.execute(
            select(func.count(distinct(R.user_id)), func.count(distinct(R.item_id)), func.count())
        ).one()
        levels = session.scalars(select(R.value).distinct().limit(64)).all()
    return {"users": int(users), "items": int(items), "ratings": int(n), "levels": sorted(levels)}


def model_bytes(spec: Any, users: int, items: int, levels: list[float]) -> int:
    """Bytes of the parameters and buffers ``spec`` has when built for ``users`` x ``items``,
    counted on PyTorch's meta device (nothing is allocated); a preset counts all its members."""
    import torch

    from collabkit.data.interactions import Ratings
    from collabkit.train.presets import PRESETS
    from collabkit.train.spec import build_untrained

    n = max(users, items, 2)
    values = np.asarray(levels or [1.0, 2.0], dtype=np.float32)
    frame = pd.DataFrame({"user": np.arange(n) % max(users, 1), "item": np.arange(n) % max(items, 1),
                          "rating": values[np.arange(n) % len(values)]})  # fmt: skip
    fake = Ratings(frame, scale=(float(values.min()), float(values.max())), name="store")
    members = PRESETS[spec.kind].members if spec.is_preset else [spec]
    total = 0
    for member in members:
        try:
            with torch.device("meta"):
                model = build_untrained(member, fake)
        except (ValueError, TypeError, RuntimeError) as e:  # over COLLABKIT_MAX_MODEL_BYTES, say
            raise ValueError(f"{spec.name} does not build: {str(e).splitlines()[0]}") from None
        per_rating = set(model.data_sized)  # BYTES_PER_RATING counts these
        tensors = [*model.parameters(), *(b for n, b in model.named_buffers() if n not in per_rating)]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def estimate_bytes(spec: Any, shape: dict[str, Any], live_bytes: int = 0) -> int:
    """Memory a retraining of ``spec`` on a store of ``shape`` needs (module docstring)."""
    cand = model_bytes(spec, shape["users"], shape["items"], shape["levels"])
    return BASE_BYTES + BYTES_PER_RATING * shape["ratings"] + STATE_FACTOR * (cand + live_bytes)


def live_bytes(engine: Engine) -> int:
    """Bytes of the live version's weights (its recipe may be retrained beside the candidate)."""
    with Session(engine) as session:
        live = store.live_version(session)
    weights = Path(live.path) / "model.safetensors" if live is not None else None
    return weights.stat().st_size if weights is not None and weights.exists() else 0


def mb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


# --- the runner: one job at a time, each in its own process -------------------------------------
class Runner:
    """Starts queued jobs one at a time as child processes and records how each ended."""

    def __init__(self, engine: Engine, url: str, models_dir: str, on_done: Any = None) -> None:
        self.engine, self.url, self.models_dir, self.on_done = engine, url, models_dir, on_done
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.closed = False

    def submit(self, spec: str, options: dict[str, Any], estimate: int, limit: int) -> int:
        """Queue a job; returns its id. It starts now, or when the one running ends.
        LookupError when MAX_QUEUED jobs are waiting already."""
        with Session(self.engine) as session:
            waiting = session.scalar(select(func.count()).select_from(store.RetrainJob)
                                     .where(store.RetrainJob.status == "queued"))  # fmt: skip
            if waiting >= MAX_QUEUED:
                raise LookupError(f"{waiting} retraining jobs are waiting already: try again when they have run")
            job = store.RetrainJob(spec=spec, options={**options, "out": self.models_dir}, status="queued",
                                   reason="", estimate_bytes=estimate, limit_bytes=limit, result={},
                                   created_at=store.now())  # fmt: skip
            session.add(job)
            session.commit()
            job_id = job.id
        self.kick()
        return job_id

    def recover(self) -> None:
        """At start-up: a job left running by a server that stopped has failed; start queued ones."""
        with Session(self.engine) as session:
            for job in session.scalars(select(store.RetrainJob).where(store.RetrainJob.status == "running")):
                starting = job.pid is None and store.now() - (job.started_at or 0) < 60  # claimed, not yet started
                if not starting and (job.pid is None or not process_alive(job.pid)):
                    _finish(job, "failed", "the server stopped while it ran")
            session.commit()
        self.kick()

    def kick(self) -> None:
        """Start the oldest queued job unless one is running."""
        with self.lock:
            if self.closed or (self.proc is not None and self.proc.poll() is None):
                return
            with Session(self.engine) as session:
                running = session.scalars(select(store.RetrainJob).where(store.RetrainJob.status == "running")).all()
                if any(j.pid is not None and process_alive(j.pid) for j in running):
                    return  # another worker process of this server runs one
                job = session.scalar(select(store.RetrainJob).where(store.RetrainJob.status == "queued")
                                     .order_by(store.RetrainJob.id).limit(1))  # fmt: skip
                if job is None:
                    return
                claimed = session.execute(update(store.RetrainJob).where(
                    store.RetrainJob.id == job.id, store.RetrainJob.status == "queued").values(status="running", started_at=store.now()))
                session.commit()
                if claimed.rowcount != 1:
                    return  # another worker took it first
                session.refresh(job)
                # Arrow's default pool (mimalloc) reserves 1 GB up front, which RLIMIT_DATA counts
                env = {**os.environ, "COLLABKIT_DB": self.url, "ARROW_DEFAULT_MEMORY_POOL": "system"}
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "collabkit.serve.jobs", str(job.id)], env=env,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
                job.status, job.pid, job.started_at = "running", self.proc.pid, store.now()
                session.commit()
                job_id, proc = job.id, self.proc
        threading.Thread(target=self._watch, args=(proc, job_id), name=f"retrain-{job_id}", daemon=True).start()

    def _watch(self, proc: subprocess.Popen, job_id: int) -> None:
        _, err = proc.communicate()
        with Session(self.engine) as session:
            job = session.get(store.RetrainJob, job_id)
            if job is not None and job.status == "running":  # the child never wrote its end
                tail = (err or b"").decode(errors="replace").strip().splitlines()[-1:]
                how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
                _finish(job, "failed", f"the retrain process ended without a result ({how})"
                        + (f": {tail[0][:300]}" if tail else ""))  # fmt: skip
                session.commit()
        if self.on_done is not None:
            try:
                self.on_done()
            except Exception:  # loading the result must not stop the queue
                log.exception("after retrain job %d", job_id)
        self.kick()

    def close(self) -> None:
        """At shutdown: stop the running job (it is recorded as failed)."""
        with self.lock:
            self.closed = True
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _finish(job: store.RetrainJob, status: str, reason: str = "", result: dict | None = None) -> None:
    job.status, job.reason, job.finished_at = status, reason[:2000], store.now()
    if result is not None:
        job.result, job.version = result, result.get("version")


# --- the child process --------------------------------------------------------------------------
def run(job_id: int) -> int:
    """Run job ``job_id`` in this process: cap memory, retrain and gate, record the end."""
    engine = store.make_engine(os.environ["COLLABKIT_DB"])
    with Session(engine) as session:
        job = session.get(store.RetrainJob, job_id)
        limit, spec, options = job.limit_bytes, job.spec, dict(job.options)
    if limit:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    status, reason, result = "failed", "", None
    try:
        from collabkit.serve.rollout import retrain

        result = retrain(engine, options["out"], spec, options.get("holdout", 0.1),
                         options.get("tolerance", 0.01), incremental=options.get("incremental", False))  # fmt: skip
        status = "done"
    except MemoryError:
        reason = f"out of memory: the job's process may use {mb(limit)} (COLLABKIT_RETRAIN_MEMORY_MB)"
    except Exception as e:  # noqa: BLE001 -- recorded as the job's reason, never raised into the server
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "can't allocate memory" in text or "Cannot allocate memory" in text:
            reason = f"out of memory: the job's process may use {mb(limit)} (COLLABKIT_RETRAIN_MEMORY_MB)"
        else:
            reason = f"{type(e).__name__}: {text}"
    with Session(engine) as session:
        job = session.get(store.RetrainJob, job_id)
        _finish(job, status, reason, result)
        session.commit()
    engine.dispose()
    return 0 if status == "done" else 1


if __name__ == "__main__":
    raise SystemExit(run(int(sys.argv[1])))
