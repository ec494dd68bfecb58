"""The durable store: releases, per-host step states, the journal and the built-in inventory in SQL.

SQLite (one file, the default) or PostgreSQL. Every method runs one short transaction and takes and returns
plain frozen dataclasses; no session or row escapes. Writers on SQLite take the write lock up front
(``BEGIN IMMEDIATE``) so two graylift processes on one file queue on ``busy_timeout`` instead of failing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from graylift.core.model import Host
from graylift.errors import ReleaseConflict, ReleaseNotFound, StateError, StoreError
from graylift.store import tables as t

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
REQUEST_ACTIONS = frozenset({"promote", "pause", "resume", "abort", "rollback"})
RELEASE_FIELDS = frozenset(
    {"state", "cursor", "phase", "wait_until", "message", "requested", "plan", "config"}
)
HOST_RUN_FIELDS = frozenset(
    {
        "state",
        "step",
        "error",
        "started_at",
        "finished_at",
        "previous_version",
        "target_version",
        "batch",
        "address",
    }
)
_PG_MIGRATION_LOCK = 0x6772_6C66  # "grlf": serialises concurrent `Store.open` migrations on PostgreSQL


@dataclass(frozen=True)
class ReleaseRecord:
    id: int
    app: str
    env: str
    kind: str
    version: str
    previous_version: str | None
    state: str
    plan: dict[str, Any]
    config: dict[str, Any]
    cursor: int
    phase: str
    wait_until: datetime | None
    message: str
    requested: str | None
    owner: str | None
    heartbeat_at: datetime | None
    started_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class HostRunRecord:
    release_id: int
    host: str
    address: str
    batch: int
    state: str
    step: str | None
    done_steps: tuple[str, ...]
    target_version: str
    previous_version: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    # The host as the inventory had it when the release started (port, user, group, tags): resume uses it.
    spec: Host | None = field(default=None, compare=False)


@dataclass(frozen=True)
class JournalEntry:
    id: int
    release_id: int
    host: str | None
    step: str
    event: str
    detail: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class DeployedVersion:
    app: str
    env: str
    version: str
    release_id: int
    at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


def host_to_json(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "group": host.group,
        "tags": dict(host.tags),
        "in_service": host.in_service,
    }


def host_from_json(data: dict[str, Any]) -> Host:
    return Host(
        name=data["name"],
        address=data["address"],
        port=int(data["port"]),
        user=data["user"],
        group=data["group"],
        tags=dict(data.get("tags") or {}),
        in_service=bool(data["in_service"]),
    )


class Store:
    """Graylift's state database. Open with :meth:`open`; share one per process; :meth:`close` at exit."""

    def __init__(
        self, url: URL, write_engine: sa.Engine, read_engine: sa.Engine, now: Callable[[], datetime] = _utcnow
    ) -> None:
        self.url = url
        self._write_engine = write_engine
        self._read_engine = read_engine
        self._now = now

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, url: str, *, now: Callable[[], datetime] = _utcnow) -> Store:
        """Connect, bring the schema to the newest migration, and return the store.

        ``sqlite:///path/graylift.db`` creates the parent directory; ``postgresql+psycopg://...`` for teams.
        ``now`` is the store's clock for timestamps and lease ages (tests pass a fake one).
        """
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(
                f"state database URL {url!r} is not valid: {exc}. "
                "Use e.g. sqlite:///var/lib/graylift/graylift.db or "
                "postgresql+psycopg://user@host/db"
            ) from exc
        shown = parsed.render_as_string(hide_password=True)
        try:
            write_engine, read_engine = _make_engines(parsed)
        except (SQLAlchemyError, ImportError, OSError) as exc:
            raise StoreError(f"cannot open state database {shown}: {exc}") from exc
        store = cls(parsed, write_engine, read_engine, now)
        try:
            store._migrate()
        except Exception as exc:
            store.close()
            raise StoreError(
                f"cannot open state database {shown}: {_short(exc)}. Check that it is reachable and writable."
            ) from exc
        return store

    def _migrate(self) -> None:
        cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._write_engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        try:
            with self._write_engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(self._failed(exc)) from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self._read_engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(self._failed(exc)) from exc

    def _failed(self, exc: Exception) -> str:
        return f"state database {self.url.render_as_string(hide_password=True)} failed: {_short(exc)}"

    # ------------------------------------------------------------------ built-in inventory
    def replace_hosts(self, app: str, env: str, hosts: list[Host]) -> None:
        """Make ``hosts`` the whole host list of app/env (an import)."""
        seen: set[str] = set()
        for host in hosts:
            if host.name in seen:
                raise StoreError(f"host {host.name} appears twice in the list for {app} ({env})")
            seen.add(host.name)
        with self._write() as conn:
            conn.execute(sa.delete(t.hosts).where(t.hosts.c.app == app, t.hosts.c.env == env))
            if hosts:
                conn.execute(sa.insert(t.hosts), [_host_row(app, env, h) for h in hosts])

    def upsert_host(self, app: str, env: str, host: Host) -> None:
        row = _host_row(app, env, host)
        with self._write() as conn:
            key = _host_key(app, env, host.name)
            done = conn.execute(
                sa.update(t.hosts)
                .where(*key)
                .values({k: v for k, v in row.items() if k not in ("app", "env", "name")})
            ).rowcount
            if not done:
                conn.execute(sa.insert(t.hosts).values(row))

    def remove_host(self, app: str, env: str, name: str) -> None:
        with self._write() as conn:
            if not conn.execute(sa.delete(t.hosts).where(*_host_key(app, env, name))).rowcount:
                raise StoreError(_no_host(app, env, name))

    def list_hosts(self, app: str, env: str) -> list[Host]:
        with self._read() as conn:
            rows = (
                conn.execute(
                    sa.select(t.hosts)
                    .where(t.hosts.c.app == app, t.hosts.c.env == env)
                    .order_by(t.hosts.c.name)
                )
                .mappings()
                .all()
            )
        return [_host_from_row(r) for r in rows]

    def set_in_service(self, app: str, env: str, name: str, in_service: bool) -> None:
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.hosts).where(*_host_key(app, env, name)).values(in_service=in_service)
            ).rowcount
            if not done:
                raise StoreError(_no_host(app, env, name))

    def list_app_envs(self) -> list[tuple[str, str, int]]:
        """Every (app, env, host count) in the built-in inventory, sorted."""
        query = (
            sa.select(t.hosts.c.app, t.hosts.c.env, sa.func.count())
            .group_by(t.hosts.c.app, t.hosts.c.env)
            .order_by(t.hosts.c.app, t.hosts.c.env)
        )
        with self._read() as conn:
            return [(a, e, int(n)) for a, e, n in conn.execute(query)]

    # ------------------------------------------------------------------ releases
    def create_release(
        self,
        *,
        app: str,
        env: str,
        kind: str,
        version: str,
        previous_version: str | None,
        plan: dict[str, Any],
        config: dict[str, Any],
        started_by: str,
        host_runs: list[tuple[Host, int, str | None]],
    ) -> ReleaseRecord:
        """Record a new release in state "pending" with its host runs, and take the app/env's active slot.

        Raises ReleaseConflict (naming the running release) when app/env already has an active release.
        """
        if kind not in ("release", "rollback"):
            raise ValueError(f"release kind must be 'release' or 'rollback', not {kind!r}")
        now = self._now()
        try:
            with self._write_engine.begin() as conn:
                release_id = conn.execute(
                    sa.insert(t.releases)
                    .values(
                        app=app,
                        env=env,
                        kind=kind,
                        version=version,
                        previous_version=previous_version,
                        state="pending",
                        plan=plan,
                        config=config,
                        cursor=0,
                        phase="",
                        wait_until=None,
                        message="",
                        requested=None,
                        owner=None,
                        heartbeat_at=None,
                        started_by=started_by,
                        created_at=now,
                        updated_at=now,
                        finished_at=None,
                    )
                    .returning(t.releases.c.id)
                ).scalar_one()
                conn.execute(sa.insert(t.active_releases).values(app=app, env=env, release_id=release_id))
                if host_runs:
                    conn.execute(
                        sa.insert(t.host_runs),
                        [
                            {
                                "release_id": release_id,
                                "host": h.name,
                                "address": h.address,
                                "host_spec": host_to_json(h),
                                "batch": batch,
                                "state": "pending",
                                "step": None,
                                "done_steps": [],
                                "target_version": version,
                                "previous_version": prev,
                                "error": None,
                                "started_at": None,
                                "finished_at": None,
                            }
                            for h, batch, prev in host_runs
                        ],
                    )
        except IntegrityError as exc:
            active = self.active_release(app, env)
            if active is None:  # the slot was freed meanwhile, or the host list had a duplicate
                names = [h.name for h, _, _ in host_runs]
                dups = sorted({n for n in names if names.count(n) > 1})
                if dups:
                    raise StoreError(f"host {dups[0]} appears twice in the release of {app} ({env})") from exc
                raise ReleaseConflict(
                    f"another release of {app} ({env}) started at the same time; "
                    "check `graylift status` and try again"
                ) from exc
            raise ReleaseConflict(
                f"release #{active.id} of {app} {active.version} ({env}) is running (state {active.state}); "
                f"wait for it, or `graylift abort {active.id}`"
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(self._failed(exc)) from exc
        return self.get_release(release_id)

    def get_release(self, release_id: int) -> ReleaseRecord:
        with self._read() as conn:
            row = conn.execute(sa.select(t.releases).where(t.releases.c.id == release_id)).mappings().first()
        if row is None:
            raise ReleaseNotFound(f"release #{release_id} not found; `graylift history` lists releases")
        return _release_from_row(row)

    def active_release(self, app: str, env: str) -> ReleaseRecord | None:
        query = (
            sa.select(t.releases)
            .join(t.active_releases, t.active_releases.c.release_id == t.releases.c.id)
            .where(t.active_releases.c.app == app, t.active_releases.c.env == env)
        )
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _release_from_row(row)

    def active_releases(self) -> list[ReleaseRecord]:
        query = (
            sa.select(t.releases)
            .join(t.active_releases, t.active_releases.c.release_id == t.releases.c.id)
            .order_by(t.releases.c.id)
        )
        with self._read() as conn:
            return [_release_from_row(r) for r in conn.execute(query).mappings()]

    def list_releases(
        self, app: str | None = None, env: str | None = None, limit: int = 50
    ) -> list[ReleaseRecord]:
        """Releases, newest first, optionally of one app and/or env."""
        query = sa.select(t.releases).order_by(t.releases.c.id.desc()).limit(limit)
        if app is not None:
            query = query.where(t.releases.c.app == app)
        if env is not None:
            query = query.where(t.releases.c.env == env)
        with self._read() as conn:
            return [_release_from_row(r) for r in conn.execute(query).mappings()]

    def update_release(self, release_id: int, **fields: Any) -> ReleaseRecord:
        """Set some of: state, cursor, phase, wait_until, message, requested, plan, config."""
        unknown = set(fields) - RELEASE_FIELDS
        if unknown:
            raise TypeError(f"update_release cannot set {sorted(unknown)}; allowed: {sorted(RELEASE_FIELDS)}")
        if fields.get("requested") is not None:
            _check_action(fields["requested"])
        self._update_release_row(release_id, {**fields, "updated_at": self._now()})
        return self.get_release(release_id)

    def finish_release(self, release_id: int, state: str, message: str) -> ReleaseRecord:
        """Mark the release finished (final state + message) and free its app/env for the next release."""
        now = self._now()
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.releases)
                .where(t.releases.c.id == release_id)
                .values(state=state, message=message, finished_at=now, updated_at=now, requested=None)
            ).rowcount
            conn.execute(sa.delete(t.active_releases).where(t.active_releases.c.release_id == release_id))
        if not done:
            raise ReleaseNotFound(f"release #{release_id} not found")
        return self.get_release(release_id)

    def request(self, release_id: int, action: str) -> None:
        """Ask the controller running the release to promote/pause/resume/abort/rollback.

        Raises StateError if the release has finished.
        """
        _check_action(action)
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.releases)
                .where(t.releases.c.id == release_id, t.releases.c.finished_at.is_(None))
                .values(requested=action, updated_at=self._now())
            ).rowcount
        if not done:
            rec = self.get_release(release_id)  # ReleaseNotFound if missing
            raise StateError(
                f"release #{rec.id} of {rec.app} {rec.version} ({rec.env}) has finished "
                f"(state {rec.state}); cannot {action} it"
            )

    def clear_request(self, release_id: int) -> None:
        self._update_release_row(release_id, {"requested": None})

    def claim(self, release_id: int, owner: str, stale_after: float) -> bool:
        """Take the release's lease (atomic compare-and-set): free, ours already, or heartbeat too old."""
        now = self._now()
        cutoff = now - timedelta(seconds=stale_after)
        c = t.releases.c
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.releases)
                .where(
                    c.id == release_id,
                    c.finished_at.is_(None),
                    sa.or_(
                        c.owner.is_(None), c.owner == owner, c.heartbeat_at.is_(None), c.heartbeat_at < cutoff
                    ),
                )
                .values(owner=owner, heartbeat_at=now)
            ).rowcount
        return bool(done)

    def heartbeat(self, release_id: int, owner: str) -> bool:
        """Renew the lease; returns False (and changes nothing) if ``owner`` no longer holds it."""
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.releases)
                .where(t.releases.c.id == release_id, t.releases.c.owner == owner)
                .values(heartbeat_at=self._now())
            ).rowcount
        return bool(done)

    def release_lease(self, release_id: int, owner: str) -> None:
        with self._write() as conn:
            conn.execute(
                sa.update(t.releases)
                .where(t.releases.c.id == release_id, t.releases.c.owner == owner)
                .values(owner=None, heartbeat_at=None)
            )

    def _update_release_row(self, release_id: int, values: dict[str, Any]) -> None:
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.releases).where(t.releases.c.id == release_id).values(values)
            ).rowcount
        if not done:
            raise ReleaseNotFound(f"release #{release_id} not found")

    # ------------------------------------------------------------------ host runs
    def host_runs(self, release_id: int) -> list[HostRunRecord]:
        """The release's host runs, ordered by batch then host name."""
        query = (
            sa.select(t.host_runs)
            .where(t.host_runs.c.release_id == release_id)
            .order_by(t.host_runs.c.batch, t.host_runs.c.host)
        )
        with self._read() as conn:
            return [_host_run_from_row(r) for r in conn.execute(query).mappings()]

    def host_run(self, release_id: int, host: str) -> HostRunRecord:
        with self._read() as conn:
            row = conn.execute(sa.select(t.host_runs).where(*_run_key(release_id, host))).mappings().first()
        if row is None:
            raise StoreError(f"host {host} is not part of release #{release_id}")
        return _host_run_from_row(row)

    def update_host_run(self, release_id: int, host: str, **fields: Any) -> HostRunRecord:
        """Set some of: state, step, error, started_at, finished_at, previous_version, target_version,
        batch, address."""
        unknown = set(fields) - HOST_RUN_FIELDS
        if unknown:
            raise TypeError(
                f"update_host_run cannot set {sorted(unknown)}; allowed: {sorted(HOST_RUN_FIELDS)}"
            )
        if fields:
            self._update_run_row(release_id, host, fields)
        return self.host_run(release_id, host)

    def mark_step_done(self, release_id: int, host: str, step: str) -> HostRunRecord:
        """Append ``step`` to the host's done steps (once) and make it the current step."""
        key = _run_key(release_id, host)
        with self._write() as conn:
            row = conn.execute(sa.select(t.host_runs.c.done_steps).where(*key).with_for_update()).first()
            if row is None:
                raise StoreError(f"host {host} is not part of release #{release_id}")
            steps = list(row[0] or [])
            if step not in steps:
                steps.append(step)
            conn.execute(sa.update(t.host_runs).where(*key).values(done_steps=steps, step=step))
        return self.host_run(release_id, host)

    def reset_host_run(self, release_id: int, host: str, *, target_version: str, state: str) -> HostRunRecord:
        """Start the host over (a retry or a rollback pass): no done steps, no error, new target."""
        self._update_run_row(
            release_id,
            host,
            {
                "target_version": target_version,
                "state": state,
                "done_steps": [],
                "step": None,
                "error": None,
                "started_at": None,
                "finished_at": None,
            },
        )
        return self.host_run(release_id, host)

    def _update_run_row(self, release_id: int, host: str, values: dict[str, Any]) -> None:
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.host_runs).where(*_run_key(release_id, host)).values(values)
            ).rowcount
        if not done:
            raise StoreError(f"host {host} is not part of release #{release_id}")

    # ------------------------------------------------------------------ journal
    def journal(
        self, release_id: int, host: str | None, step: str, event: str, detail: dict[str, Any] | None = None
    ) -> None:
        """Append one entry (one short transaction)."""
        with self._write() as conn:
            conn.execute(
                sa.insert(t.journal).values(
                    release_id=release_id,
                    host=host,
                    step=step,
                    event=event,
                    detail=detail or {},
                    at=self._now(),
                )
            )

    def journal_entries(
        self, release_id: int, host: str | None = None, since_id: int = 0
    ) -> list[JournalEntry]:
        """Entries of a release in write order, optionally of one host and/or after entry ``since_id``."""
        query = (
            sa.select(t.journal)
            .where(t.journal.c.release_id == release_id, t.journal.c.id > since_id)
            .order_by(t.journal.c.id)
        )
        if host is not None:
            query = query.where(t.journal.c.host == host)
        with self._read() as conn:
            return [
                JournalEntry(
                    id=r["id"],
                    release_id=r["release_id"],
                    host=r["host"],
                    step=r["step"],
                    event=r["event"],
                    detail=dict(r["detail"] or {}),
                    at=r["at"],
                )
                for r in conn.execute(query).mappings()
            ]

    # ------------------------------------------------------------------ deployed versions
    def record_deployed(self, app: str, env: str, version: str, release_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                sa.insert(t.deployed_versions).values(
                    app=app, env=env, version=version, release_id=release_id, at=self._now()
                )
            )

    def deployed_versions(self, app: str, env: str) -> list[DeployedVersion]:
        """Versions that went live for app/env, newest first."""
        query = (
            sa.select(t.deployed_versions)
            .where(t.deployed_versions.c.app == app, t.deployed_versions.c.env == env)
            .order_by(t.deployed_versions.c.id.desc())
        )
        with self._read() as conn:
            return [
                DeployedVersion(
                    app=r["app"], env=r["env"], version=r["version"], release_id=r["release_id"], at=r["at"]
                )
                for r in conn.execute(query).mappings()
            ]

    def current_version(self, app: str, env: str) -> str | None:
        query = (
            sa.select(t.deployed_versions.c.version)
            .where(t.deployed_versions.c.app == app, t.deployed_versions.c.env == env)
            .order_by(t.deployed_versions.c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            return conn.execute(query).scalar()


# ---------------------------------------------------------------------- helpers
def _make_engines(url: URL) -> tuple[sa.Engine, sa.Engine]:
    """(write engine, read engine). On a SQLite file they differ only in how a transaction begins."""
    if url.get_backend_name() != "sqlite":
        engine = sa.create_engine(url, pool_pre_ping=True)
        return engine, engine
    database = url.database or ""
    if database in ("", ":memory:"):
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        _sqlite_setup(engine, begin="BEGIN IMMEDIATE", wal=False)
        return engine, engine
    if not database.startswith("file:"):
        path = Path(database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        url = url.set(database=str(path))
    args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    write = sa.create_engine(url, connect_args=args)
    read = sa.create_engine(url, connect_args=args)
    _sqlite_setup(write, begin="BEGIN IMMEDIATE", wal=True)
    _sqlite_setup(read, begin="BEGIN", wal=True)
    return write, read


def _sqlite_setup(engine: sa.Engine, *, begin: str, wal: bool) -> None:
    """Pragmas per connection, and our own BEGIN (pysqlite's implicit transactions are switched off)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin)


def _short(exc: BaseException) -> str:
    """A one-line reason: the driver's message without SQLAlchemy's statement dump and help link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_action(action: str) -> None:
    if action not in REQUEST_ACTIONS:
        raise StateError(f"unknown request {action!r}; expected one of {', '.join(sorted(REQUEST_ACTIONS))}")


def _no_host(app: str, env: str, name: str) -> str:
    return (
        f"host {name} is not in the inventory of {app} ({env}); `graylift hosts list --app {app} --env {env}`"
    )


def _host_key(app: str, env: str, name: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (t.hosts.c.app == app, t.hosts.c.env == env, t.hosts.c.name == name)


def _run_key(release_id: int, host: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (t.host_runs.c.release_id == release_id, t.host_runs.c.host == host)


def _host_row(app: str, env: str, host: Host) -> dict[str, Any]:
    return {
        "app": app,
        "env": env,
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "ssh_user": host.user,
        "host_group": host.group,
        "tags": dict(host.tags),
        "in_service": host.in_service,
    }


def _host_from_row(r: Any) -> Host:
    return Host(
        name=r["name"],
        address=r["address"],
        port=r["port"],
        user=r["ssh_user"],
        group=r["host_group"],
        tags=dict(r["tags"] or {}),
        in_service=bool(r["in_service"]),
    )


def _release_from_row(r: Any) -> ReleaseRecord:
    return ReleaseRecord(
        id=r["id"],
        app=r["app"],
        env=r["env"],
        kind=r["kind"],
        version=r["version"],
        previous_version=r["previous_version"],
        state=r["state"],
        plan=r["plan"],
        config=r["config"],
        cursor=r["cursor"],
        phase=r["phase"],
        wait_until=r["wait_until"],
        message=r["message"],
        requested=r["requested"],
        owner=r["owner"],
        heartbeat_at=r["heartbeat_at"],
        started_by=r["started_by"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        finished_at=r["finished_at"],
    )


def _host_run_from_row(r: Any) -> HostRunRecord:
    spec = r["host_spec"]
    return HostRunRecord(
        release_id=r["release_id"],
        host=r["host"],
        address=r["address"],
        batch=r["batch"],
        state=r["state"],
        step=r["step"],
        done_steps=tuple(r["done_steps"] or ()),
        target_version=r["target_version"],
        previous_version=r["previous_version"],
        error=r["error"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        spec=host_from_json(spec) if spec else None,
    )
