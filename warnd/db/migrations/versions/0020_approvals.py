"""approvals: the two-person rule (red or imminent warnings composed by hand, cancels)

Revision ID: 0020_approvals
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.db.models

revision = "0020_approvals"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = warnd.db.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("author_display", sa.String(), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("hazard", sa.String(), nullable=False),
        sa.Column("colour", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("headline", sa.String(), nullable=False),
        sa.Column("area_desc", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("cap_xml", sa.Text(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_display", sa.String(), nullable=False),
        sa.Column("decided_at", UTC(), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_approvals_state", "approvals", ["state"])
    op.create_index("ix_approvals_alert_id", "approvals", ["alert_id"])


def downgrade() -> None:
    op.drop_table("approvals")
