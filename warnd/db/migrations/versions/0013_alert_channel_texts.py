"""alerts.channel_texts: a GB/T 35965.1 message's per-method texts, by warnd channel

Revision ID: 0013_alert_channel_texts
Revises: 0001

A branch of its own off 0001, like the other feature revisions: it has nothing to do with
0012_timestamptz, which must stay a head that can be undone and redone on its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_alert_channel_texts"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("channel_texts", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("channel_texts")
