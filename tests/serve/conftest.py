"""Fixtures of the service tests: a tiny trained model, a real SQLite file, a real PostgreSQL server.

PostgreSQL comes from $COLLABKIT_TEST_PG (a URL) when set; otherwise a throwaway cluster is
started on 127.0.0.1 and a free port with the local initdb/pg_ctl (as the postgres user when the
tests run as root) and stopped at the end. Tests skip PostgreSQL only when it is not installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from collabkit.checkpoint import save_model
from collabkit.serve import Settings, create_app, migrate, store
from collabkit.serve.rollout import _train
from collabkit.serve.security import create_key
from tests.conftest import make_ratings

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob(PG_BIN_GLOB))
    return Path(dirs[-1]) if dirs else None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server URL (admin database): $COLLABKIT_TEST_PG or a throwaway cluster."""
    if os.environ.get("COLLABKIT_TEST_PG"):
        yield os.environ["COLLABKIT_TEST_PG"]
        return
    bin_dir = _pg_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl): apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="collabkit-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    # fsync=off: the cluster is thrown away, and the crash tests kill the app server, not
    # PostgreSQL (a commit is durable against that once PostgreSQL has it); it keeps the many
    # CREATE DATABASEs and the shutdown checkpoint from taking a minute on a busy disk
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    run(
        str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def fresh_pg_database(server: str) -> str:
    """A new, empty database on the server; its URL."""
    name = "ck_" + uuid.uuid4().hex[:12]
    engine = store.make_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


def empty_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty store at schema head: a SQLite file in ``folder`` or a new database on
    the test PostgreSQL server."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'collabkit.db'}"
    else:
        url = fresh_pg_database(request.getfixturevalue("pg_server"))
    engine = store.make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store at schema head: a SQLite file, then a PostgreSQL database."""
    return empty_store(request.param, tmp_path, request)


@pytest.fixture(scope="session")
def tiny_data():
    return make_ratings(n_users=80, n_items=50, density=0.35)


@pytest.fixture(scope="session")
def tiny_model(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dot-bias model trained on the tiny ratings, saved with its item titles."""
    folder = tmp_path_factory.mktemp("model")
    model = _train("dot-bias(n_factors=4, epochs=8, lr_max=2e-2)", tiny_data)
    return save_model(model, folder, items=tiny_data.items)


def load_store(url: str, data) -> None:
    """Put ratings (as the server would have received them) into the store."""
    f = data.frame
    rows = [
        {"user": str(u), "item": str(i), "value": float(r), "timestamp": float(t)}
        for u, i, r, t in zip(f["user"], f["item"], f["rating"], f["timestamp"])
    ]
    engine = store.make_engine(url)
    with Session(engine) as session:
        store.upsert_ratings(session, rows)
    engine.dispose()


def make_key(url: str, role: str) -> str:
    engine = store.make_engine(url)
    with Session(engine) as session:
        key = create_key(session, role)
    engine.dispose()
    return key


class Api:
    """A TestClient plus the keys of a served store."""

    def __init__(self, client: TestClient, url: str, writer: str, admin: str) -> None:
        self.client, self.url = client, url
        self.writer = {"Authorization": f"Bearer {writer}"}
        self.admin = {"X-API-Key": admin}


@pytest.fixture
def api(db_url: str, tiny_data, tiny_model: Path, tmp_path: Path) -> Iterator[Api]:
    """The app on a store holding the tiny ratings, serving a copy of the tiny model (its engine
    cache, with the users' stamps, made from this store)."""
    load_store(db_url, tiny_data)
    writer, admin = make_key(db_url, "writer"), make_key(db_url, "admin")
    model = shutil.copytree(tiny_model, tmp_path / "model")
    settings = Settings(
        db=db_url, model=str(model), reload_seconds=0, exposure_flush_seconds=0.2,
        models_dir=str(tmp_path / "models"),
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield Api(client, db_url, writer, admin)
