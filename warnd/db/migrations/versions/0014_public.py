"""public recipient lists, opt-outs, campaigns and per-warning targets

Revision ID: 0014_public
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.db.models

revision = "0014_public"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = warnd.db.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "public_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("region_code", sa.String(length=20), nullable=False),
        sa.Column("village_code", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("consent_date", sa.String(length=10), nullable=True),
        sa.Column("shelter", sa.String(), nullable=False),
        sa.Column("list_name", sa.String(length=128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phone", "region_code", "kind", name="uq_public_recipient"),
    )
    op.create_index("ix_public_recipients_phone", "public_recipients", ["phone"])
    op.create_index("ix_public_recipients_region_code", "public_recipients", ["region_code"])
    op.create_index("ix_public_recipients_village_code", "public_recipients", ["village_code"])
    op.create_table(
        "public_opt_outs",
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("at", UTC(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("phone"),
    )
    op.create_table(
        "public_campaigns",
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("targeted", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("planned_at", UTC(), nullable=True),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    op.create_table(
        "public_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("village_code", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("planned_at", UTC(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alert_id", "phone", name="uq_public_target"),
    )
    op.create_index("ix_public_targets_alert_id", "public_targets", ["alert_id"])
    op.create_index("ix_public_targets_delivery_id", "public_targets", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("public_targets")
    op.drop_table("public_campaigns")
    op.drop_table("public_opt_outs")
    op.drop_table("public_recipients")
