"""A service you can leave running: the store's facts (its rating scale, rows skipped), retrain
jobs run in their own process, canaries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_facts",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
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
        sa.Column("version", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_retrain_jobs_status", "retrain_jobs", ["status"])
    op.create_table(
        "canaries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("live_version", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("min_rated", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_canaries_status", "canaries", ["status"])


def downgrade() -> None:
    op.drop_index("ix_canaries_status", "canaries")
    op.drop_table("canaries")
    op.drop_index("ix_retrain_jobs_status", "retrain_jobs")
    op.drop_table("retrain_jobs")
    op.drop_table("store_facts")
