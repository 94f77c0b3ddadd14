"""time-zone-aware timestamps on PostgreSQL (timestamptz)

Revision ID: 0012_timestamptz
Revises: 0002_speakers, 0003_feeds, 0004_confirm

Timestamps were stored as `timestamp without time zone` holding UTC wall time. Every such
column becomes `timestamptz`, reading the stored value as UTC (`USING col AT TIME ZONE
'UTC'`), so nothing moves whatever the server's or the session's TimeZone. The columns are
found in the catalogue rather than listed, so a table another branch of the migration graph
created before this runs is converted too; tables created afterwards are already aware
(warnd.db.models.UTCDateTime). SQLite has no zone type and keeps ISO text in UTC.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_timestamptz"
down_revision = ("0002_speakers", "0003_feeds", "0004_confirm")
branch_labels = None
depends_on = None

_COLUMNS = sa.text(
    "SELECT table_name, column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND data_type = :type ORDER BY table_name, column_name"
)


def _convert(from_type: str, to_type: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column in bind.execute(_COLUMNS, {"type": from_type}).all():
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE {to_type} '
                   f"USING \"{column}\" AT TIME ZONE 'UTC'")


def upgrade() -> None:
    _convert("timestamp without time zone", "timestamptz")


def downgrade() -> None:
    _convert("timestamp with time zone", "timestamp without time zone")
