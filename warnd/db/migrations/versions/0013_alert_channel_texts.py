"""alerts.channel_texts: a GB/T 35965.1 message's per-method texts, by warnd channel

Revision ID: 0013_alert_channel_texts
Revises: 0012_timestamptz
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_alert_channel_texts"
down_revision = "0012_timestamptz"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("channel_texts", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("channel_texts")
