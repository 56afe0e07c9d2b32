"""Initial schema: users, items, ratings, model versions, exposures, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from collabkit.serve.migrations.columns import epoch_time, user_item_event, version_ref

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        epoch_time("created_at"),
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
        epoch_time("created_at"),
        epoch_time("promoted_at", nullable=True),
        epoch_time("trained_through"),
    )
    op.create_index("ix_model_versions_status", "model_versions", ["status"])
    op.create_table(
        "ratings",
        *user_item_event(),
        sa.Column("value", sa.Float(), nullable=False),
        epoch_time("timestamp"),
        epoch_time("written_at"),
        sa.UniqueConstraint("user_id", "item_id", name="uq_ratings_user_item"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        epoch_time("created_at"),
    )
    op.create_table(
        "exposures",
        *user_item_event(),
        sa.Column("position", sa.Integer(), nullable=False),
        version_ref("model_version", nullable=True),
        epoch_time("shown_at"),
    )
    op.create_index("ix_exposures_user_time", "exposures", ["user_id", "shown_at"])


def downgrade() -> None:
    for table in ("exposures", "users", "ratings", "model_versions", "items", "api_keys"):
        op.drop_table(table)
