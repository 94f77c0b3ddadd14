"""the anchors of a scaled clock, so a restart continues the same timeline

Revision ID: 0013_clock_anchor
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_clock_anchor"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clock_anchor",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("speed", sa.Float(), nullable=False),
        sa.Column("origin", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wall_origin", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("clock_anchor")
