"""The store on a real SQLite file and a real PostgreSQL database: upserts, migrations, keys."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from collabkit.serve import migrate, store
from collabkit.serve.security import allows, create_key, key_role


@pytest.fixture
def session(db_url):
    engine = store.make_engine(db_url)
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_upsert_is_last_write_wins(session):
    store.upsert_ratings(session, [{"user": "u", "item": "a", "value": 1.0}])
    store.upsert_ratings(
        session,
        [{"user": "u", "item": "a", "value": 4.0}, {"user": "u", "item": "b", "value": 2.0}],
    )
    # a repeat inside one batch keeps the later row, as if sent one by one
    store.upsert_ratings(
        session,
        [{"user": "u", "item": "b", "value": 3.0}, {"user": "u", "item": "b", "value": 5.0}],
    )
    items, values, written = store.user_ratings(session.get_bind(), "u")
    assert dict(zip(items, values.tolist())) == {"a": 4.0, "b": 5.0} and len(written) == 2
    assert store.count_ratings(session) == 2
    assert session.get(store.User, "u") is not None and session.get(store.Item, "b") is not None


def test_concurrent_overlapping_batches_do_not_deadlock(db_url):
    """Writers sending the same pairs in different orders all succeed (one lock order)."""
    engine = store.make_engine(db_url)
    errors: list[Exception] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        pairs = [(f"u{k % 7}", str(k % 11)) for k in range(77)]
        try:
            with Session(engine) as s:
                for _ in range(10):
                    rng.shuffle(pairs)
                    rows = [{"user": u, "item": i, "value": float(seed)} for u, i in pairs[:40]]
                    store.upsert_ratings(s, rows)
        except Exception as e:  # noqa: BLE001 -- collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    assert not errors, errors[:1]


def test_delete_rating(session):
    store.upsert_ratings(session, [{"user": "u", "item": "a", "value": 1.0}])
    assert store.delete_rating(session, "u", "a")
    assert not store.delete_rating(session, "u", "a")
    assert store.count_ratings(session) == 0


def test_search_items_escapes_wildcards(session, tiny_data):
    store.upsert_ratings(session, [{"user": "u", "item": "101", "value": 1.0}])  # item seen first
    store.upsert_items(session, tiny_data.items.assign(year=1990))
    hits = store.search_items(session, "movie 1", 100)
    assert store.items_meta(session, ["101"])["101"].meta == {
        "title": "Movie 0 (1980)",
        "year": 1990,
    }
    assert hits and all("movie 1" in h.title.lower() for h in hits)
    assert store.search_items(session, "%", 10) == []  # a literal percent sign, not "anything"


def test_promote_and_rollback_history(session):
    a = store.add_version(session, "/a").id
    b = store.add_version(session, "/b").id
    store.set_live(session, a)
    store.set_live(session, b)
    assert store.live_version(session).id == b
    assert session.get(store.ModelVersion, a).status == "retired"
    assert store.previous_version(session).id == a


def test_upgrade_is_idempotent_and_refuses_a_newer_schema(db_url):
    engine = store.make_engine(db_url)
    assert migrate.upgrade(engine) == migrate.head()  # already at head: nothing to do
    migrate.check(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    with pytest.raises(migrate.SchemaError, match="newer"):
        migrate.upgrade(engine)
    with pytest.raises(migrate.SchemaError, match="newer"):
        migrate.check(engine)
    engine.dispose()


def test_empty_database_must_be_upgraded(tmp_path):
    engine = store.make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(migrate.SchemaError, match="db upgrade"):
        migrate.check(engine)
    engine.dispose()


def test_sqlite_is_wal_and_synchronous_full(tmp_path):
    engine = store.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    engine.dispose()


def test_keys_are_hashed_and_checked(session):
    key = create_key(session, "writer")
    assert key_role(session, key) == "writer"
    assert key_role(session, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert key_role(session, "ck_nope_nope") is None and key_role(session, "garbage") is None
    stored = session.scalars(select(store.ApiKey)).all()
    assert all(key not in (k.hash, k.salt, k.prefix) for k in stored)
    assert allows("admin", "writer") and not allows("writer", "admin")
    with pytest.raises(ValueError, match="role"):
        create_key(session, "root")


def test_the_migrations_build_exactly_the_tables_the_code_declares(db_url):
    """Every schema change goes through a migration: the migrated database has no table, column
    or index the SQLAlchemy models lack, and lacks none they declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = store.make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), store.Base.metadata)
    engine.dispose()
    assert diff == [], diff


def test_the_scale_is_recorded_once_unless_replaced(session):
    from collabkit.serve.validation import UNRECORDED, Scale

    assert store.scale(session) == UNRECORDED
    first = store.record_scale(session, Scale(1, 5, 1, source="model"))
    assert store.record_scale(session, Scale(0, 10)) == first  # the first recorded stays
    assert store.record_scale(session, Scale(0.5, 5, 0.5), replace=True).step == 0.5
    assert store.scale(session) == Scale(0.5, 5, 0.5)


def test_all_ratings_skips_and_counts_rows_off_the_scale(session):
    from collabkit.serve.validation import Scale

    store.record_scale(session, Scale(1, 5, 1))
    store.upsert_ratings(session, [{"user": "u", "item": "a", "value": 4.0}, {"user": "u", "item": "b", "value": 9.0},
                                   {"user": "v", "item": "a", "value": 2.5}])  # fmt: skip
    assert store.all_ratings(session)["item"].tolist() == ["a"]
    assert store.fact(session, "skipped")["ratings"] == 2


def _stamps(engine) -> dict[str, int]:
    with Session(engine) as s:
        return store.user_stamps(s)


def test_every_change_to_a_users_ratings_restamps_only_them(db_url):
    """Writes through the store and SQL by hand alike (the triggers of migration 0004)."""
    engine = store.make_engine(db_url)
    with Session(engine) as s:
        store.upsert_ratings(s, [{"user": u, "item": i, "value": 3.0} for u in "abc" for i in "xy"])
    steps = [
        lambda s: store.upsert_ratings(s, [{"user": "a", "item": "z", "value": 1.0}]),  # a new rating
        lambda s: store.upsert_ratings(s, [{"user": "a", "item": "x", "value": 3.0}]),  # the same value again
        lambda s: store.delete_rating(s, "a", "z"),
        lambda s: (s.execute(text("UPDATE ratings SET value = 1 WHERE user_id = 'a' AND item_id = 'y'")), s.commit()),
        lambda s: (s.execute(text("DELETE FROM ratings WHERE user_id = 'a' AND item_id = 'y'")), s.commit()),
        lambda s: (s.execute(text("INSERT INTO ratings (user_id, item_id, value, timestamp, written_at) "
                                  "VALUES ('a', 'y', 2, 0, 0)")), s.commit()),
    ]  # fmt: skip
    seen = [_stamps(engine)]
    for step in steps:
        with Session(engine) as s:
            step(s)
        seen.append(_stamps(engine))
        assert seen[-1]["a"] not in [before["a"] for before in seen[:-1]]
        assert {u: seen[-1][u] for u in "bc"} == {u: seen[0][u] for u in "bc"}
    assert store.user_stamp(engine, "a") == seen[-1]["a"] >= 0 and store.user_stamp(engine, "nobody") is None
    engine.dispose()


def test_the_stamps_migration_stamps_every_existing_user(db_url):
    from alembic import command

    engine = store.make_engine(db_url)
    cfg = migrate._config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    with engine.begin() as conn:
        for u in ("a", "b"):
            conn.execute(text("INSERT INTO users (id, created_at) VALUES (:u, 0)"), {"u": u})
            conn.execute(text("INSERT INTO ratings (user_id, item_id, value, timestamp, written_at) VALUES (:u, 'x', 3, 0, 0)"), {"u": u})
    assert migrate.upgrade(engine) == migrate.head()
    before = _stamps(engine)
    assert len(set(before.values())) == 2 and min(before.values()) >= 0
    with Session(engine) as s:
        store.delete_rating(s, "b", "x")
    assert _stamps(engine)["a"] == before["a"] and _stamps(engine)["b"] != before["b"]
    engine.dispose()


def test_exposures_are_written_whole_in_multi_row_statements(db_url):
    engine = store.make_engine(db_url)
    n = 2 * store.ROWS_PER_STATEMENT + 51  # two full statements and a shorter one on SQLite
    rows = [{"user_id": f"u{k % 7}", "item_id": str(k), "position": k % 10 + 1, "model_version": None,
             "shown_at": 1000.0 + k} for k in range(n)]  # fmt: skip
    with Session(engine) as s:
        store.add_exposures(s, rows)
        got = s.execute(select(store.Exposure.user_id, store.Exposure.item_id, store.Exposure.position,
                               store.Exposure.model_version, store.Exposure.shown_at).order_by(store.Exposure.shown_at)).all()  # fmt: skip
    engine.dispose()
    assert [tuple(r) for r in got] == [tuple(r.values()) for r in rows]
