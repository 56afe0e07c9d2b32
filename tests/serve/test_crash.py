"""Durability: a writer streams ratings to a real uvicorn server that is SIGKILLed at random
moments and restarted; every rating that got a 2xx is in the store (SQLite and PostgreSQL).

Restarts are fast: a warm parent process (collabkit and torch imported, no database opened)
forks a fresh child per start, and the child runs the app under uvicorn; that child is what gets
SIGKILLed. 10 kills per database then fit in well under a minute on a busy machine. The next child
starts only once the killed one is gone: a child killed inside an fsync lives on until the fsync
returns, still holding the port, and a new child would fail to bind it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from collabkit.serve import store
from tests.serve.conftest import free_port, make_key

KILLS = 10  # per database: 20 in all
BUDGET_SECONDS = 60  # per database: stop killing (and say so) rather than run long
SERVER = """
import os, signal, sys, uvicorn
from collabkit.serve import Settings, create_app
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed children are reaped by the kernel
print("warm", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        uvicorn.run(create_app(Settings()), host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
        os._exit(0)
    print(pid, flush=True)
"""


class Forker:
    """The warm parent: ``start()`` forks a server child and returns its pid."""

    def __init__(self, url: str, port: int) -> None:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "COLLABKIT_DB": url, "COLLABKIT_RELOAD_SECONDS": "0",
               "COLLABKIT_EXPOSURES": "false",
               "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, text=True,
        )  # fmt: skip
        assert self.proc.stdout.readline().strip() == "warm"

    def start(self) -> int:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.mark.slow
def test_acknowledged_ratings_survive_sigkill(db_url):
    key = {"Authorization": f"Bearer {make_key(db_url, 'writer')}"}
    port, rng = free_port(), random.Random(7)
    acked: dict[tuple[str, str], float] = {}
    stop, seq = threading.Event(), iter(range(10**9))

    def writer() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, headers=key) as http:
            while not stop.is_set():
                batch = []
                for _ in range(rng.randint(1, 5)):
                    k = next(seq)
                    batch.append(
                        {"user": f"w{k // 40}", "item": str(k % 40), "value": float(k % 5 + 1)}
                    )
                try:
                    r = http.post("/v1/ratings", json={"ratings": batch})
                except httpx.HTTPError:
                    time.sleep(0.01)  # the server is down: not acknowledged, try new ratings
                    continue
                if r.status_code == 201:
                    acked.update({(b["user"], b["item"]): b["value"] for b in batch})

    forker = Forker(db_url, port)
    thread = threading.Thread(target=writer)
    thread.start()
    start, kills, child = time.monotonic(), 0, None
    try:
        while kills < KILLS and time.monotonic() - start < BUDGET_SECONDS:
            child = forker.start()
            _wait_up(port, child)
            time.sleep(rng.uniform(0.05, 0.5))  # writes in flight when the kill lands
            os.kill(child, signal.SIGKILL)
            kills += 1
            _wait_gone(child)
        child = forker.start()
        _wait_up(port, child)  # the store opens cleanly after the last kill
    finally:
        stop.set()
        thread.join()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):  # already killed, or died starting
                os.kill(child, signal.SIGKILL)
        forker.close()
    assert kills == KILLS, f"only {kills} kills within {BUDGET_SECONDS} s"
    engine = store.make_engine(db_url)
    with Session(engine) as s:
        frame = store.all_ratings(s)
    engine.dispose()
    stored = {(u, i): v for u, i, v in zip(frame["user"], frame["item"], frame["rating"])}
    lost = {k: v for k, v in acked.items() if stored.get(k) != v}
    assert len(acked) > 50 and not lost, f"{len(lost)} of {len(acked)} acknowledged ratings lost"


def _wait_gone(pid: int) -> None:
    """Until the killed child has exited (the parent ignores SIGCHLD: the kernel reaps it)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError(f"the killed server {pid} did not exit")


def _wait_up(port: int, pid: int, timeout: float = 30) -> None:
    """Until the child ``pid`` answers /healthz; fails at once if it exits (its stderr says why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise AssertionError(f"the server {pid} exited while starting") from None
            time.sleep(0.02)
    raise AssertionError("the server did not come back")
