"""A stamp per user that changes with every change to their ratings, so that a served model can
tell in one primary-key read that a user's ratings are as it captured them (``serve.engine``).

Triggers on ``ratings`` set it, in the transaction of the change, whoever writes (the service,
``collabkit db``, SQL by hand): a random non-negative 63-bit number (a counter would repeat across
stores and across copies of one store, whose snapshots a model's engine cache may hold).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQLITE_RANDOM = "(random() & 9223372036854775807)"
PG_RANDOM = "(floor(random() * 9007199254740991)::bigint)"  # random() has 52 bits to give


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    fresh = PG_RANDOM if postgres else SQLITE_RANDOM
    # 0 until the user's first rating (SQLite adds no column with a computed default); no user
    # without ratings is answered from a snapshot, so a shared 0 never stands for one
    op.add_column("users", sa.Column("stamp", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(f"UPDATE users SET stamp = {fresh}")  # every existing user: a stamp of its own
    if postgres:
        op.execute(f"""
            CREATE FUNCTION collabkit_user_stamp() RETURNS trigger AS $$
            BEGIN
                IF TG_OP <> 'INSERT' THEN
                    UPDATE users SET stamp = {fresh} WHERE id = OLD.user_id;
                END IF;
                IF TG_OP <> 'DELETE' THEN
                    UPDATE users SET stamp = {fresh} WHERE id = NEW.user_id;
                END IF;
                RETURN NULL;
            END $$ LANGUAGE plpgsql""")
        op.execute("""
            CREATE TRIGGER ratings_user_stamp AFTER INSERT OR UPDATE OR DELETE ON ratings
            FOR EACH ROW EXECUTE FUNCTION collabkit_user_stamp()""")
        return
    for event, users in (("INSERT", ["NEW"]), ("UPDATE", ["OLD", "NEW"]), ("DELETE", ["OLD"])):
        body = " ".join(f"UPDATE users SET stamp = {fresh} WHERE id = {row}.user_id;" for row in users)
        op.execute(f"CREATE TRIGGER ratings_user_stamp_{event.lower()} AFTER {event} ON ratings BEGIN {body} END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ratings_user_stamp ON ratings")
        op.execute("DROP FUNCTION collabkit_user_stamp()")
    else:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER ratings_user_stamp_{event}")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("stamp")
