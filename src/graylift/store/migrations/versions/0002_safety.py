"""Fenced leases, release direction, what pre-checks found, bad versions and host health.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("direction", sa.String(16), nullable=False, server_default="forward"))
    with op.batch_alter_table("host_runs") as batch:
        batch.add_column(sa.Column("found", sa.JSON, nullable=True))
        batch.add_column(sa.Column("target_dir", sa.String(255), nullable=True))
        batch.add_column(sa.Column("attention", sa.JSON, nullable=True))
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("epoch", sa.Integer, nullable=True))
    with op.batch_alter_table("deployed_versions") as batch:
        batch.add_column(sa.Column("sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="release"))
    op.create_table(
        "bad_versions",
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("release_id", ID_TYPE, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name="fk_bad_versions_release_id_releases"),
        sa.PrimaryKeyConstraint("app", "env", "version", name="pk_bad_versions"),
    )
    op.create_table(
        "host_health",
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("backends", sa.JSON, nullable=False),
        sa.Column("release_id", ID_TYPE, nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name="fk_host_health_release_id_releases"),
        sa.PrimaryKeyConstraint("app", "env", "host", name="pk_host_health"),
    )


def downgrade() -> None:
    op.drop_table("host_health")
    op.drop_table("bad_versions")
    with op.batch_alter_table("deployed_versions") as batch:
        batch.drop_column("source")
        batch.drop_column("sha256")
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("epoch")
        batch.drop_column("owner")
    with op.batch_alter_table("host_runs") as batch:
        batch.drop_column("attention")
        batch.drop_column("target_dir")
        batch.drop_column("found")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("direction")
        batch.drop_column("lease_epoch")
