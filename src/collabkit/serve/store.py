"""The store: SQLAlchemy 2.0 tables, the engine (SQLite or PostgreSQL) and the queries the API needs.

One schema for both back ends. SQLite runs in WAL mode with ``synchronous=FULL``, so a commit
has reached the disk when it returns: a rating acknowledged with a 2xx survives a crash.
Ratings are unique on (user, item); writing a pair again replaces it ("last write wins", by
arrival order at the server, not by the client's timestamp).
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from collabkit.serve.validation import ID_LENGTH, UNRECORDED, Scale, usable

log = logging.getLogger("collabkit.serve")
ROLES = ("writer", "admin")
STATUSES = ("candidate", "live", "retired", "rolled back")
JOB_STATUSES = ("queued", "running", "failed", "done")


class Base(DeclarativeBase):
    pass


def now() -> float:
    """Server time, seconds since the epoch (UTC)."""
    return time.time()


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    # a new random number with every change to the user's ratings, set by triggers on ``ratings``
    # (migration 0004), whoever writes: one read tells a served model whether they changed
    stamp: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Item(Base):
    __tablename__ = "items"
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(500), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class Rating(Base):
    """One (user, item) rating; ``timestamp`` is when the user rated (the client's clock or the
    server's), ``written_at`` when the server stored it (what 'rated after training' compares)."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("user_id", "item_id", name="uq_ratings_user_item"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    value: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[float] = mapped_column(Float)
    written_at: Mapped[float] = mapped_column(Float)


class ModelVersion(Base):
    """A saved model folder and its fate: candidate -> live -> retired (live again by rollback), or
    rolled back (a rollback left it: never a rollback's target, only promoted again by hand)."""

    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1000))
    spec: Mapped[str] = mapped_column(String(200), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="candidate", index=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    promoted_at: Mapped[float | None] = mapped_column(Float)
    # ratings written after this server time are unknown to the model (folded in at request time)
    trained_through: Mapped[float] = mapped_column(Float, default=now)


class Exposure(Base):
    """What was shown to whom, where, by which model version: the monitor's and de-biasing's input."""

    __tablename__ = "exposures"
    __table_args__ = (
        Index("ix_exposures_user_time", "user_id", "shown_at"),
        Index("ix_exposures_shown_at", "shown_at"),  # the monitor reads by time (migration 0002)
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    position: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    shown_at: Mapped[float] = mapped_column(Float)


class AlertThreshold(Base):
    """A monitor threshold an admin set: alert when ``metric`` crosses ``value`` (see api/monitor)."""

    __tablename__ = "alert_thresholds"
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class ApiKey(Base):
    """An API key, stored as sha256(salt + key): the key itself is shown once and never kept."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Fact(Base):
    """What the store knows about itself, by name: its rating ``scale``, the rows last ``skipped``."""

    __tablename__ = "store_facts"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class RetrainJob(Base):
    """A retraining asked for through the API: queued -> running -> done | failed (with a reason)."""

    __tablename__ = "retrain_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[str] = mapped_column(String(200))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # holdout, tolerance
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    reason: Mapped[str] = mapped_column(String(2000), default="")
    estimate_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    limit_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    pid: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)


class Canary(Base):
    """A version served to a ``fraction`` of users beside the live one, until it is promoted or
    rolled back (by the rule in ``serve.canary`` or by hand): status running | promoted | rolled back."""

    __tablename__ = "canaries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    live_version: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    fraction: Mapped[float] = mapped_column(Float)
    tolerance: Mapped[float] = mapped_column(Float)
    min_rated: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    reason: Mapped[str] = mapped_column(String(2000), default="")
    started_at: Mapped[float] = mapped_column(Float, default=now)
    ended_at: Mapped[float | None] = mapped_column(Float)


# --- engine ---------------------------------------------------------------------------------
def make_engine(url: str, **kw: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, synchronous=FULL and a 30 s busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kw)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):  # psycopg 3 is the driver we ship
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kw)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _insert(session: Session, model: Any) -> Any:
    """A dialect INSERT (with ON CONFLICT) on the model's table: keys are column names."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model.__table__)


# --- ratings ------------------------------------------------------------------------------------
def upsert_ratings(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or replace ratings (dicts: user, item, value, timestamp?); commit; return the count.

    Users and items are created on first sight. Within one batch a repeated (user, item) keeps its
    last occurrence, as if the rows had been sent one by one.
    """
    if not rows:
        return 0
    written = now()
    last = {(r["user"], r["item"]): r for r in rows}
    values = [
        {"user_id": u, "item_id": i, "value": float(r["value"]),
         "timestamp": written if r.get("timestamp") is None else float(r["timestamp"]),
         "written_at": written}
        for (u, i), r in sorted(last.items())  # one lock order for all writers: no deadlocks
    ]  # fmt: skip
    _lock_users(session, {u for u, _ in last}, written)
    items = [{"id": i, "metadata": {}} for i in sorted({i for _, i in last})]  # sorted: one lock order
    _write_many(session, Item, items, ("id",))
    _write_many(session, Rating, values, ("user_id", "item_id"), ("value", "timestamp", "written_at"))
    session.commit()
    return len(values)


def add_user(session: Session, user: str) -> None:
    """Create ``user`` (without ratings) unless the store has them; commit."""
    _write_many(session, User, [{"id": user, "created_at": now()}], ("id",))
    session.commit()


def _lock_users(session: Session, users: Iterable[str], created_at: float) -> None:
    """Create or restamp ``users``, in id order, before their ratings change. Their rows are then
    this transaction's, so the ratings triggers' restamping (migration 0004) waits for no one:
    every writer takes user rows first and in one order, and no two deadlock."""
    rows = [{"id": u, "created_at": created_at, "stamp": secrets.randbits(63)} for u in sorted(users)]
    _write_many(session, User, rows, ("id",), ("stamp",))


#: rows of one multi-row INSERT on SQLite (a thousand or so parameters)
ROWS_PER_STATEMENT = 200


def _write_many(session: Session, table: Any, rows: Sequence[dict[str, Any]], conflict: tuple[str, ...] = (),
                update: tuple[str, ...] = ()) -> None:  # fmt: skip
    """INSERT ``rows`` (dicts with the same columns) into ``table``; a row that
    clashes on the columns ``conflict`` updates the columns ``update`` of the stored one, or
    without any, leaves it. On SQLite as a few multi-row statements straight to the driver: it
    hands the GIL back around each statement it steps, and a thread stepping a row at a time
    starved the event loop of it (a request's own query then waited up to the 5 ms switch
    interval to get it back)."""
    if not rows:
        return
    if session.get_bind().dialect.name != "sqlite":
        stmt = _insert(session, table)
        if conflict and update:
            stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update})
        elif conflict:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
        session.execute(stmt, rows)
        return
    columns = tuple(rows[0])
    cursor = session.connection().connection.cursor()
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        sql = _sqlite_insert(table.__tablename__, columns, len(chunk), conflict, update)
        cursor.execute(sql, [json.dumps(v) if isinstance(v, dict) else v for r in chunk for v in map(r.__getitem__, columns)])
    cursor.close()


@functools.lru_cache(maxsize=32)
def _sqlite_insert(table: str, columns: tuple[str, ...], n: int, conflict: tuple[str, ...], update: tuple[str, ...]) -> str:
    """SQLite's INSERT of ``n`` rows of ``columns`` (qmark parameters, row by row) with its
    ON CONFLICT clause (``_write_many``)."""
    quoted = lambda names: [f'"{c}"' for c in names]
    row = "(" + ", ".join("?" * len(columns)) + ")"
    sql = f"INSERT INTO \"{table}\" ({', '.join(quoted(columns))}) VALUES " + ", ".join([row] * n)
    if conflict:
        action = ", ".join(f"{c} = excluded.{c}" for c in quoted(update)) if update else ""
        sql += f" ON CONFLICT ({', '.join(quoted(conflict))}) " + (f"DO UPDATE SET {action}" if update else "DO NOTHING")
    return sql


def delete_rating(session: Session, user: str, item: str) -> bool:
    """Remove one rating; False when there was none."""
    session.execute(update(User).where(User.id == user).values(stamp=secrets.randbits(63)))  # first: _lock_users
    done = session.execute(delete(Rating).where(Rating.user_id == user, Rating.item_id == item))
    session.commit()
    return done.rowcount > 0


USER_RATINGS = select(Rating.item_id, Rating.value, Rating.written_at).where(Rating.user_id == bindparam("user"))
USER_STAMP = select(User.stamp).where(User.id == bindparam("user"))


def user_ratings(engine: Engine, user: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The user's stored ratings as (items, ratings, written_at): one indexed query (the leading
    column of the (user, item) unique index), no ORM session, no frame; a request's path."""
    rows = _fetch(engine, USER_RATINGS, user)
    if not rows:
        return [], np.zeros(0), np.zeros(0)
    items, values, written = zip(*rows)
    return list(items), np.array(values, dtype=np.float64), np.array(written, dtype=np.float64)


def user_stamp(engine: Engine, user: str) -> int | None:
    """The user's stamp (``User.stamp``; None: no such user): one primary-key read."""
    rows = _fetch(engine, USER_STAMP, user)
    return int(rows[0][0]) if rows else None


def user_stamps(session: Session) -> dict[str, int]:
    """{user: stamp} of every user: read before the ratings a served model captures, so a stamp
    is never newer than the ratings captured with it (``serve.engine``)."""
    return {u: int(s) for u, s in session.execute(select(User.id, User.stamp))}


def _fetch(engine: Engine, query: Any, user: str) -> list[tuple[Any, ...]]:
    """The rows of ``query`` for ``user`` straight from the driver: SQL compiled once per dialect,
    the driver's tuples; for a user with a hundred ratings SQLAlchemy's result rows cost more than
    the query."""
    sql, positional = _compiled(query, engine.dialect)
    raw = engine.raw_connection()  # from the pool, back to it (rolled back) on close
    try:
        cursor = raw.cursor()
        cursor.execute(sql, (user,) if positional else {"user": user})
        rows = cursor.fetchall()
        cursor.close()
    finally:
        raw.close()
    return rows


@functools.lru_cache(maxsize=16)
def _compiled(query: Any, dialect: Any) -> tuple[str, bool]:
    """(SQL in the driver's parameter style, whether its parameters are positional)."""
    compiled = query.compile(dialect=dialect)
    return str(compiled), bool(compiled.positional)


def all_ratings(session: Session) -> pd.DataFrame:
    """Every usable rating as a frame user, item, rating, timestamp, written_at (oldest first).

    Rows that break the edge's rule (``validation.usable``: a bad id, a value off the store's
    scale) are skipped, never fatal: counted in the log and in the ``skipped`` fact (Admin page).
    """
    q = select(Rating.user_id, Rating.item_id, Rating.value, Rating.timestamp, Rating.written_at)
    rows = session.execute(q.order_by(Rating.timestamp, Rating.written_at, Rating.id)).all()
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp", "written_at"])
    keep, reasons = usable(frame, scale(session))
    skipped = int(len(frame) - keep.sum())
    if skipped:
        log.warning("skipped %d stored rating(s) that break the rule: %s", skipped, reasons)
    if skipped or fact(session, "skipped"):
        set_fact(session, "skipped", {"ratings": skipped, "reasons": reasons, "of": len(frame)})
    return frame[keep].reset_index(drop=True) if skipped else frame


def user_ratings_page(session: Session, user: str, limit: int, after: str | None) -> list[Rating]:
    """Up to ``limit`` of the user's stored ratings in item order, from the item after ``after``."""
    q = select(Rating).where(Rating.user_id == user)
    if after is not None:
        q = q.where(Rating.item_id > after)
    return list(session.scalars(q.order_by(Rating.item_id).limit(limit)))


def delete_user(session: Session, user: str) -> tuple[int, int] | None:
    """Forget ``user``: their ratings, exposures and row, in one transaction; (ratings, exposures)
    deleted, or None when the store has never heard of them."""
    session.execute(update(User).where(User.id == user).values(stamp=secrets.randbits(63)))  # first: _lock_users
    ratings = session.execute(delete(Rating).where(Rating.user_id == user)).rowcount
    exposures = session.execute(delete(Exposure).where(Exposure.user_id == user)).rowcount
    users = session.execute(delete(User).where(User.id == user)).rowcount
    session.commit()
    return None if not (ratings or exposures or users) else (ratings, exposures)


def rated_items(session: Session, at_least: int) -> dict[str, int]:
    """{item: its number of stored ratings} for the items with at least ``at_least`` (one grouped
    query: the live holder's check for new items)."""
    q = select(Rating.item_id, func.count()).group_by(Rating.item_id).having(func.count() >= at_least)
    return {item: int(n) for item, n in session.execute(q)}


def count_ratings(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Rating)) or 0)


# --- items --------------------------------------------------------------------------------------
def upsert_items(session: Session, table: pd.DataFrame) -> int:
    """Insert or update items from a frame indexed by item id (a title column is searchable)."""
    if table is None or not len(table):
        return 0
    records = table.astype(object).where(table.notna(), None).to_dict("index")
    values = [
        {"id": str(i), "title": _title(meta.get("title")), "metadata": meta}
        for i, meta in records.items()
    ]
    stmt = _insert(session, Item)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={"title": stmt.excluded.title, "metadata": stmt.excluded["metadata"]},
    )
    session.execute(stmt, values)
    session.commit()
    return len(values)


def _title(value: Any) -> str | None:
    return None if value is None else str(value)[:500]


def search_items(session: Session, query: str, limit: int) -> list[Item]:
    """Items whose title contains ``query`` (case-insensitive), shortest titles first."""
    pattern = (
        "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    )
    q = select(Item).where(func.lower(Item.title).like(pattern, escape="\\"))
    return list(session.scalars(q.order_by(func.length(Item.title), Item.id).limit(limit)))


def items_meta(session: Session, ids: Sequence[str]) -> dict[str, Item]:
    return {i.id: i for i in session.scalars(select(Item).where(Item.id.in_(list(ids))))}


# --- model versions -----------------------------------------------------------------------------
def add_version(
    session: Session, path: str, spec: str = "", metrics: dict[str, Any] | None = None,
    trained_through: float | None = None,
) -> ModelVersion:  # fmt: skip
    """Register a saved model folder as a candidate."""
    version = ModelVersion(
        path=path, spec=spec, metrics=metrics or {}, status="candidate", created_at=now(),
        trained_through=now() if trained_through is None else trained_through,
    )  # fmt: skip
    session.add(version)
    session.commit()
    return version


def live_version(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.status == "live"))


def versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))


def set_live(session: Session, version_id: int, retire_as: str = "retired") -> ModelVersion:
    """Make ``version_id`` live and give the current live version status ``retire_as``, in one
    transaction (a rollback passes "rolled back")."""
    target = session.get(ModelVersion, version_id)
    if target is None:
        raise LookupError(f"no model version {version_id}")
    for v in session.scalars(select(ModelVersion).where(ModelVersion.status == "live")):
        if v.id != version_id:
            v.status = retire_as
    target.status, target.promoted_at = "live", now()
    session.commit()
    return target


def previous_version(session: Session) -> ModelVersion | None:
    """The version that was live before the current one: the latest promoted retired version."""
    q = select(ModelVersion).where(
        ModelVersion.status == "retired", ModelVersion.promoted_at.is_not(None)
    )
    return session.scalar(q.order_by(ModelVersion.promoted_at.desc()).limit(1))


# --- facts: the scale, skipped rows ------------------------------------------------------------
def fact(session: Session, name: str) -> dict[str, Any] | None:
    row = session.get(Fact, name)
    return None if row is None else row.value


def set_fact(session: Session, name: str, value: dict[str, Any]) -> None:
    stmt = _insert(session, Fact)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}
    )
    session.execute(stmt, [{"name": name, "value": value, "updated_at": now()}])
    session.commit()


def scale(session: Session) -> Scale:
    """The store's recorded scale (``validation.UNRECORDED`` until one is recorded)."""
    value = fact(session, "scale")
    return UNRECORDED if value is None else Scale.from_json(value)


def record_scale(session: Session, new: Scale, replace: bool = False) -> Scale:
    """Record ``new`` as the store's scale unless one is recorded (or ``replace``); returns the one in force."""
    if fact(session, "scale") is None or replace:
        set_fact(session, "scale", new.to_json())
        return new
    return scale(session)


# --- exposures ----------------------------------------------------------------------------------
def add_exposures(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert exposure rows (dicts: user_id, item_id, position, model_version, shown_at); commit."""
    if rows:
        _write_many(session, Exposure, rows)
        session.commit()


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()
