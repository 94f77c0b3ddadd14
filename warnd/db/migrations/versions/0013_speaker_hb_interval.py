"""speakers: the heartbeat interval the device advertises (state `hb_interval_s`); speaker
commands: when the stop command of a cancelled warning was published (`stop_sent_at`)

Revision ID: 0013_speaker_hb_interval
Revises: 0002_speakers

Staleness is judged against the device's own interval (three missed heartbeats) when it
advertised one, else `[speakers] stale_after_seconds`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_speaker_hb_interval"
down_revision = "0002_speakers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("speakers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hb_interval_s", sa.Integer(), nullable=True))
    with op.batch_alter_table("speaker_commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stop_sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("speaker_commands", schema=None) as batch_op:
        batch_op.drop_column("stop_sent_at")
    with op.batch_alter_table("speakers", schema=None) as batch_op:
        batch_op.drop_column("hb_interval_s")
