"""confirm links and feedback (反馈)

Revision ID: 0004_confirm
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.db.models

revision = "0004_confirm"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "confirm_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", warnd.db.models.UTCDateTime(), nullable=False),
        sa.Column("created_at", warnd.db.models.UTCDateTime(), nullable=False),
        sa.Column("used_at", warnd.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_confirm_links_call_id", "confirm_links", ["call_id"])
    op.create_index("ix_confirm_links_alert_id", "confirm_links", ["alert_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("region_code", sa.String(length=20), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("people_moved", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("via", sa.String(), nullable=False),
        sa.Column("created_at", warnd.db.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feedback_call_id", "feedback", ["call_id"])
    op.create_index("ix_feedback_alert_id", "feedback", ["alert_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("confirm_links")
