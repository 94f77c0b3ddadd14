"""automated feeds: poll state, seen entries, telemetry readings and station state

Revision ID: 0003_feeds
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import warnd.db.models

revision = "0003_feeds"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_state",
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("etag", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("last_modified", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("last_poll_at", warnd.db.models.UTCDateTime(), nullable=True),
        sa.Column("last_success_at", warnd.db.models.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", warnd.db.models.UTCDateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_poll_at", warnd.db.models.UTCDateTime(), nullable=True),
        sa.Column("last_entry_at", warnd.db.models.UTCDateTime(), nullable=True),
        sa.Column("last_lag_seconds", sa.Float(), nullable=True),
        sa.Column("entries_ingested", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_table(
        "feed_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("entry_key", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("seen_at", warnd.db.models.UTCDateTime(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "entry_key", name="uq_feed_entry"),
    )
    op.create_index("ix_feed_entries_source", "feed_entries", ["source"], unique=False)
    op.create_table(
        "telemetry_readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("metric", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("at", warnd.db.models.UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("received_at", warnd.db.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("station", "metric", "at", name="uq_telemetry_reading"),
    )
    op.create_index("ix_telemetry_readings_station", "telemetry_readings", ["station"], unique=False)
    op.create_index("ix_telemetry_readings_at", "telemetry_readings", ["at"], unique=False)
    op.create_table(
        "telemetry_state",
        sa.Column("station", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("evaluated_at", warnd.db.models.UTCDateTime(), nullable=True),
        sa.Column("raised_level", sa.Integer(), nullable=False),
        sa.Column("raised_at", warnd.db.models.UTCDateTime(), nullable=True),
        sa.Column("alert_sender", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("alert_identifier", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("alert_sent", warnd.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("station"),
    )


def downgrade() -> None:
    op.drop_table("telemetry_state")
    op.drop_index("ix_telemetry_readings_at", table_name="telemetry_readings")
    op.drop_index("ix_telemetry_readings_station", table_name="telemetry_readings")
    op.drop_table("telemetry_readings")
    op.drop_index("ix_feed_entries_source", table_name="feed_entries")
    op.drop_table("feed_entries")
    op.drop_table("feed_state")
