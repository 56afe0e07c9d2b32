"""A service you can leave running: the store's facts (its rating scale, rows skipped), retrain
jobs run in their own process, canaries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from collabkit.serve.migrations.columns import epoch_time, named_value, version_ref

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("store_facts", *named_value("name", sa.JSON()))
    op.create_table(
        "retrain_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("spec", sa.String(200), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("estimate_bytes", sa.BigInteger(), nullable=False),
        sa.Column("limit_bytes", sa.BigInteger(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        version_ref("version", nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        epoch_time("created_at"),
        epoch_time("started_at", nullable=True),
        epoch_time("finished_at", nullable=True),
    )
    op.create_index("ix_retrain_jobs_status", "retrain_jobs", ["status"])
    op.create_table(
        "canaries",
        sa.Column("id", sa.Integer(), primary_key=True),
        version_ref("version", nullable=False),
        version_ref("live_version", nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("min_rated", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        epoch_time("started_at"),
        epoch_time("ended_at", nullable=True),
    )
    op.create_index("ix_canaries_status", "canaries", ["status"])


def downgrade() -> None:
    op.drop_index("ix_canaries_status", "canaries")
    op.drop_table("canaries")
    op.drop_index("ix_retrain_jobs_status", "retrain_jobs")
    op.drop_table("retrain_jobs")
    op.drop_table("store_facts")
