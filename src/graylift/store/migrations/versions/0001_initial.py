"""The first schema: built-in inventory, releases, the active-release slot, host runs, journal, versions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("ssh_user", sa.String(64), nullable=False),
        sa.Column("host_group", sa.String(128), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("in_service", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("app", "env", "name", name="pk_hosts"),
    )
    op.create_table(
        "releases",
        sa.Column("id", ID_TYPE, autoincrement=True, nullable=False),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("previous_version", sa.String(128), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("cursor", sa.Integer, nullable=False),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("wait_until", TS, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("requested", sa.String(16), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_releases"),
    )
    op.create_index("ix_releases_app_env_id", "releases", ["app", "env", "id"])
    op.create_table(
        "active_releases",
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("release_id", ID_TYPE, nullable=False),
        sa.PrimaryKeyConstraint("app", "env", name="pk_active_releases"),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name="fk_active_releases_release_id_releases"
        ),
        sa.UniqueConstraint("release_id", name="uq_active_releases_release_id"),
    )
    op.create_table(
        "host_runs",
        sa.Column("release_id", ID_TYPE, nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("host_spec", sa.JSON, nullable=False),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("step", sa.String(64), nullable=True),
        sa.Column("done_steps", sa.JSON, nullable=False),
        sa.Column("target_version", sa.String(128), nullable=False),
        sa.Column("previous_version", sa.String(128), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("release_id", "host", name="pk_host_runs"),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name="fk_host_runs_release_id_releases"),
    )
    op.create_table(
        "journal",
        sa.Column("id", ID_TYPE, autoincrement=True, nullable=False),
        sa.Column("release_id", ID_TYPE, nullable=False),
        sa.Column("host", sa.String(128), nullable=True),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal"),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name="fk_journal_release_id_releases"),
    )
    op.create_index("ix_journal_release_id_id", "journal", ["release_id", "id"])
    op.create_table(
        "deployed_versions",
        sa.Column("id", ID_TYPE, autoincrement=True, nullable=False),
        sa.Column("app", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("release_id", ID_TYPE, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployed_versions"),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name="fk_deployed_versions_release_id_releases"
        ),
    )
    op.create_index("ix_deployed_versions_app_env_id", "deployed_versions", ["app", "env", "id"])


def downgrade() -> None:
    op.drop_table("deployed_versions")
    op.drop_table("journal")
    op.drop_table("host_runs")
    op.drop_table("active_releases")
    op.drop_table("releases")
    op.drop_table("hosts")
