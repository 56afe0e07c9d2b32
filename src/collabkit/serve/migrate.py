"""Alembic migrations driven from code: ``upgrade(engine)`` and ``check(engine)``, no alembic.ini.

The scripts live in ``collabkit/serve/migrations/versions``. A database whose schema revision is
not one of ours was written by a newer collabkit: we refuse to touch it rather than downgrade it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaError(RuntimeError):
    """The database schema is not the one this collabkit expects (older: upgrade; newer: refuse)."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    """The newest schema revision this collabkit knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The database's schema revision (None: an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the schema to ``head()`` (creating it in an empty database); returns the revision."""
    rev = current(engine)
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if rev is not None and rev not in known:
        raise SchemaError(
            f"the database schema ({rev}) is newer than this collabkit (head {head()}); "
            "upgrade collabkit instead: it is never downgraded"
        )
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return head()


def check(engine: Engine) -> None:
    """Raise SchemaError unless the database is exactly at ``head()``."""
    rev, want = current(engine), head()
    if rev == want:
        return
    if rev is None:
        raise SchemaError(
            "the database has no collabkit schema: run `collabkit db upgrade --db URL`"
        )
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if rev in known:
        raise SchemaError(
            f"the database schema ({rev}) is older than {want}: run `collabkit db upgrade`"
        )
    raise SchemaError(
        f"the database schema ({rev}) is newer than this collabkit ({want}): refusing it"
    )
