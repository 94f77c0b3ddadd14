"""people: a second number for voice (phone2) and extra roles (一肩挑)

Revision ID: 0005_people_roles_phone2
Revises: 0001

`people.phone` now holds the mobile only. Rows whose phone is a landline (the importer used to
store one there) move it to phone2 and keep phone = "": SMS can never reach a landline, voice
can. A mainland mobile is +861[3-9]…; +8610… is Beijing's area code, a landline.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_people_roles_phone2"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phone2", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    op.execute(
        "UPDATE people SET phone2 = phone, phone = '' "
        "WHERE phone LIKE '+86%' AND (substr(phone, 4, 1) <> '1' OR substr(phone, 4, 2) = '10')"
    )
    op.create_table(
        "person_extra_roles",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"]),
        sa.PrimaryKeyConstraint("person_id", "role"),
    )


def downgrade() -> None:
    op.drop_table("person_extra_roles")
    op.execute("UPDATE people SET phone = phone2 WHERE phone = '' AND phone2 IS NOT NULL")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_column("phone2")
