"""The state database's tables (SQLAlchemy Core). The migrations in ``migrations/versions`` create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# An autoincrement id: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops tzinfo, so it is put back on read)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamp {value.isoformat()} has no timezone; pass an aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def _serial_id() -> sa.Column[int]:
    """The table's autoincrement primary key."""
    return sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True)


def _app_env(*, key: bool = False, nullable: bool = False) -> tuple[sa.Column[str], sa.Column[str]]:
    """The app and the environment a row belongs to; ``key``: part of the primary key."""
    return (sa.Column("app", sa.String(128), primary_key=key, nullable=nullable),
            sa.Column("env", sa.String(128), primary_key=key, nullable=nullable))


def _release_id(*, key: bool = False, nullable: bool = False, unique: bool | None = None) -> sa.Column[int]:
    """The release a row belongs to; ``key``: part of the primary key."""
    return sa.Column("release_id", ID_TYPE, sa.ForeignKey("releases.id"), primary_key=key, nullable=nullable,
                     unique=unique)


def _who_when(verb: str) -> tuple[sa.Column[str], sa.Column[datetime]]:
    """Who did ``verb`` to the row (a user name) and when: ``created_by``/``created_at``, ``updated_by``/..."""
    return (sa.Column(f"{verb}_by", sa.String(64), nullable=False),
            sa.Column(f"{verb}_at", UTCDateTime, nullable=False))


hosts = sa.Table(
    "hosts",
    metadata,
    *_app_env(key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("ssh_user", sa.String(64), nullable=False),
    sa.Column("host_group", sa.String(128), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("in_service", sa.Boolean, nullable=False),
)

releases = sa.Table(
    "releases",
    metadata,
    _serial_id(),
    *_app_env(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("previous_version", sa.String(128), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("plan", sa.JSON, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("cursor", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(64), nullable=False),
    sa.Column("wait_until", UTCDateTime, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("requested", sa.String(16), nullable=True),
    sa.Column("owner", sa.String(255), nullable=True),
    sa.Column("heartbeat_at", UTCDateTime, nullable=True),
    # bumped by every claim: a driver's writes carry the epoch it claimed, and fail once another took over
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("direction", sa.String(16), nullable=False, server_default="forward"),
    sa.Column("started_by", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Index(None, "app", "env", "id"),
)

# One row per (app, env) with a running release: the primary key is the database's guarantee that two
# processes cannot start two releases of the same app in the same environment.
active_releases = sa.Table(
    "active_releases",
    metadata,
    *_app_env(key=True),
    _release_id(unique=True),
)

host_runs = sa.Table(
    "host_runs",
    metadata,
    _release_id(key=True),
    sa.Column("host", sa.String(128), primary_key=True),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("host_spec", sa.JSON, nullable=False),
    sa.Column("batch", sa.Integer, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("step", sa.String(64), nullable=True),
    sa.Column("done_steps", sa.JSON, nullable=False),
    sa.Column("target_version", sa.String(128), nullable=False),
    sa.Column("previous_version", sa.String(128), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    # what this pass's pre-check found on the host (layout, version, release dirs): the one source of undo
    sa.Column("found", sa.JSON, nullable=True),
    # the release dir to switch to when it is not the target version's own (a revert, a rollback)
    sa.Column("target_dir", sa.String(255), nullable=True),
    # backends the host could not be put back into (needs_attention), with their errors
    sa.Column("attention", sa.JSON, nullable=True),
)

journal = sa.Table(
    "journal",
    metadata,
    _serial_id(),
    _release_id(),
    sa.Column("host", sa.String(128), nullable=True),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("owner", sa.String(255), nullable=True),  # the driver that wrote it, and its lease epoch
    sa.Column("epoch", sa.Integer, nullable=True),
    sa.Index(None, "release_id", "id"),
)

deployed_versions = sa.Table(
    "deployed_versions",
    metadata,
    _serial_id(),
    *_app_env(),
    sa.Column("version", sa.String(128), nullable=False),
    _release_id(),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    # release (the fleet went to it), rollback (back to it), survey (found on the hosts by a first release)
    sa.Column("source", sa.String(16), nullable=False, server_default="release"),
    sa.Index(None, "app", "env", "id"),
)

# Versions a rollback left: never chosen by a later rollback, resume or retry.
bad_versions = sa.Table(
    "bad_versions",
    metadata,
    *_app_env(key=True),
    sa.Column("version", sa.String(128), primary_key=True),
    _release_id(),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

# Hosts a release could not put back completely: counted as out of service by every later release until a
# release succeeds on them or `graylift hosts clear`.
host_health = sa.Table(
    "host_health",
    metadata,
    *_app_env(key=True),
    sa.Column("host", sa.String(128), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("backends", sa.JSON, nullable=False),
    _release_id(),
    sa.Column("since", UTCDateTime, nullable=False),
)

# --- the server's side (graylift serve): accounts, approvals, freezes, audit, notifications ---------------

users = sa.Table(
    "users",
    metadata,
    _serial_id(),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=True),  # argon2id; None: API tokens only (a CI user)
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    *_who_when("created"),
)

# Tokens are shown once: only their SHA-256 is kept (they are 256 random bits, so a fast hash is enough).
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    _serial_id(),
    sa.Column("user_id", ID_TYPE, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),  # the first characters, to tell tokens apart
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

# A role per app x env; "*" matches every app or every env. The highest matching role applies.
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("user_id", ID_TYPE, sa.ForeignKey("users.id"), primary_key=True),
    *_app_env(key=True),
    sa.Column("role", sa.String(16), nullable=False),
)

# Console sessions: the cookie holds a random id, the database its SHA-256 and the session's CSRF token.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", ID_TYPE, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# A release someone asked for where the environment needs approval: immutable once made; the release is
# created (with these fields, never others) only when enough other people approved it.
release_requests = sa.Table(
    "release_requests",
    metadata,
    _serial_id(),
    *_app_env(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("version", sa.String(128), nullable=True),  # a rollback without --to: None (the last good one)
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("ticket", sa.String(128), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("approvals_needed", sa.Integer, nullable=False),
    # waiting -> approved -> started; or rejected, cancelled, expired
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    _release_id(nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "state", "id"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("request_id", ID_TYPE, sa.ForeignKey("release_requests.id"), primary_key=True),
    sa.Column("user", sa.String(64), primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),  # approve | reject
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

# Who asked for a release through the server, why, and how (the console's release header).
release_info = sa.Table(
    "release_info",
    metadata,
    _release_id(key=True),
    sa.Column("trigger", sa.String(16), nullable=False),  # console | api | cli | webhook
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("ticket", sa.String(128), nullable=False),
    sa.Column("request_id", ID_TYPE, sa.ForeignKey("release_requests.id"), nullable=True),
    sa.Column("override", sa.Text, nullable=True),  # an admin's reason for releasing in a freeze window
)

env_policies = sa.Table(
    "env_policies",
    metadata,
    *_app_env(key=True),  # app "*": every app
    sa.Column("approvals", sa.Integer, nullable=False),  # approvals by people other than the requester
    sa.Column("approve_rollbacks", sa.Boolean, nullable=False, server_default=sa.false()),
    *_who_when("updated"),
)

freeze_windows = sa.Table(
    "freeze_windows",
    metadata,
    _serial_id(),
    *_app_env(),  # app "*": every app
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("ends_at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    *_who_when("created"),
)

# Releases to start at a time (`graylift schedule`); the worker pool starts each when it is due.
schedules = sa.Table(
    "schedules",
    metadata,
    _serial_id(),
    *_app_env(),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("run_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # waiting | started | failed | cancelled
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("release_id", ID_TYPE, nullable=True),
    *_who_when("created"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_schedules_state_run_at", "state", "run_at"),
)

# Append-only (the migration adds triggers that refuse UPDATE and DELETE on every backend).
audit_log = sa.Table(
    "audit_log",
    metadata,
    _serial_id(),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("via", sa.String(64), nullable=False),  # session, token:<name>, cli, server
    sa.Column("source", sa.String(128), nullable=False),  # the client's address
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    *_app_env(nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # ok | denied | refused | failed
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index(None, "app", "env", "id"),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    _serial_id(),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("channel", sa.String(16), nullable=False),  # dingtalk | feishu | wecom | slack | generic
    sa.Column("url", sa.Text, nullable=False),  # a secret (it carries the robot's token): never shown whole
    sa.Column("secret", sa.Text, nullable=True),  # signing secret; never shown
    *_app_env(),  # app "*": every app
    sa.Column("events", sa.JSON, nullable=False),  # event names; empty: every event
    sa.Column("template", sa.Text, nullable=True),  # message template; None: the channel's default
    sa.Column("enabled", sa.Boolean, nullable=False),
    *_who_when("created"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    _serial_id(),
    sa.Column("webhook_id", ID_TYPE, sa.ForeignKey("webhooks.id"), nullable=False),
    sa.Column("event_key", sa.String(64), nullable=False),  # journal:<id> or request:<id>:<state>: once each
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("release_id", ID_TYPE, nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending | sent | dead
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("claimed_by", sa.String(255), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("webhook_id", "event_key"),
    sa.Index(None, "state", "next_attempt_at"),
)

# How far the notifier has read the journal (shared by every server on the database).
notifier_cursor = sa.Table(
    "notifier_cursor",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("journal_id", ID_TYPE, nullable=False),
)

instance = sa.Table(  # one row: this database's id, which names its leases' fencing tokens on hosts
    "instance",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
)
