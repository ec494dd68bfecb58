"""The database's own id: it names the fencing tokens this database's leases write on hosts.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table("instance", sa.Column("id", sa.String(32), nullable=False),
                            sa.PrimaryKeyConstraint("id", name="pk_instance"))
    op.bulk_insert(table, [{"id": secrets.token_hex(8)}])


def downgrade() -> None:
    op.drop_table("instance")
