"""Initial schema: users, items, ratings, model versions, exposures, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
    )
    op.create_index("ix_items_title", "items", ["title"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("spec", sa.String(200), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("promoted_at", sa.Float(), nullable=True),
        sa.Column("trained_through", sa.Float(), nullable=False),
    )
    op.create_index("ix_model_versions_status", "model_versions", ["status"])
    op.create_table(
        "ratings",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("user_id", "item_id", name="uq_ratings_user_item"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "exposures",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=True),
        sa.Column("shown_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_exposures_user_time", "exposures", ["user_id", "shown_at"])


def downgrade() -> None:
    for table in ("exposures", "users", "ratings", "model_versions", "items", "api_keys"):
        op.drop_table(table)
