"""The monitor: thresholds an admin sets for its alerts; exposures indexed by time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from collabkit.serve.migrations.columns import named_value

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("alert_thresholds", *named_value("metric", sa.Float()))
    op.create_index("ix_exposures_shown_at", "exposures", ["shown_at"])


def downgrade() -> None:
    op.drop_index("ix_exposures_shown_at", "exposures")
    op.drop_table("alert_thresholds")
