"""claim tokens on deliveries and calls; a fallback alert names the warning it stands for

Revision ID: 0005_claims
Revises: 0002_speakers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_claims"
down_revision = "0002_speakers"
branch_labels = None
depends_on = None

FALLBACK_SUFFIX = "#speaker-fallback"


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as b:
        b.add_column(sa.Column("claim", sa.String(length=32), nullable=True))
    with op.batch_alter_table("calls") as b:
        b.add_column(sa.Column("claim", sa.String(length=32), nullable=True))
    with op.batch_alter_table("alerts") as b:
        b.add_column(sa.Column("fallback_for_id", sa.Integer(), nullable=True))
        b.create_index("ix_alerts_fallback_for_id", ["fallback_for_id"])
    # Fallback alerts made before this revision were linked by an identifier suffix.
    op.execute(
        "UPDATE alerts SET fallback_for_id = (SELECT o.id FROM alerts o WHERE o.sender = alerts.sender "
        f"AND o.identifier || '{FALLBACK_SUFFIX}' = alerts.identifier) "
        "WHERE source = 'speaker_fallback' AND fallback_for_id IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("alerts") as b:
        b.drop_index("ix_alerts_fallback_for_id")
        b.drop_column("fallback_for_id")
    with op.batch_alter_table("calls") as b:
        b.drop_column("claim")
    with op.batch_alter_table("deliveries") as b:
        b.drop_column("claim")
