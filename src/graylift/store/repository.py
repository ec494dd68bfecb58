"""The durable store: releases, per-host step states, the journal and the built-in inventory in SQL.

SQLite (one file, the default) or PostgreSQL. Every method runs one short transaction and takes and returns
plain frozen records; no session or row escapes. Writers on SQLite take the write lock up front
(``BEGIN IMMEDIATE``) so two graylift processes on one file queue on ``busy_timeout`` instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from graylift.core.model import Host
from graylift.core.state import (
    Direction,
    HostState,
    ReleaseKind,
    ReleaseState,
    Request,
    check_transition,
)
from graylift.errors import (
    ConfigError,
    GrayliftError,
    ReleaseConflict,
    ReleaseNotFound,
    StateError,
    StoreError,
    StoreUnreachable,
)
from graylift.store import tables as t
from graylift.store.base import Fence, utcnow
from graylift.store.db import APPLICATION_NAME, PG_IDLE_TX_MS, make_engines, migrate, short
from graylift.store.records import (
    ReleaseRecord,
    host_to_json,
    release_from_row,
)
from graylift.store.runs import RunStore
from graylift.store.statements import GET_RELEASE

RELEASE_FIELDS = frozenset({"cursor", "phase", "wait_until", "message", "requested", "plan", "config",
                            "previous_version"})
"""What ``update_release`` may set; the state and direction change only through ``transition``."""
CLAIM_LOCK = 0x6772_6C66  # PostgreSQL advisory lock key ("grlf") that serialises the claims' tokens


class Store(RunStore):
    """Graylift's state database. Open with :meth:`open`; share one per process; :meth:`close` at exit."""

    @classmethod
    def open(cls, url: str, *, now: Callable[[], datetime] = utcnow, create_dir: bool = False,
             migrate_schema: bool = True) -> Store:
        """Connect, bring the schema to the newest migration, and return the store.

        ``sqlite:///path/graylift.db`` (its directory is created only with ``create_dir``; the file is 0600);
        ``postgresql+psycopg://...`` for teams. ``now`` is the store's clock for timestamps (tests pass a
        fake one); lease ages on PostgreSQL are judged on the database's own clock.
        """
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(f"state database URL {url!r} is not valid: {exc}. Use e.g. "
                              "sqlite:////var/lib/graylift/state.db or postgresql+psycopg://user@host/db") from None
        shown = parsed.render_as_string(hide_password=True)
        try:
            write_engine, read_engine = make_engines(parsed, create_dir=create_dir)
        except GrayliftError:
            raise
        except (SQLAlchemyError, ImportError, OSError) as exc:
            raise StoreUnreachable(f"cannot open state database {shown}: {short(exc)}") from exc
        store = cls(parsed, write_engine, read_engine, now)
        if not migrate_schema:  # the caller brings the schema (the simulation copies a migrated database)
            return store
        try:
            migrate(write_engine)
        except Exception as exc:
            store.close()
            raise StoreUnreachable(f"cannot open state database {shown}: {short(exc)}. "
                                   "Check that it is reachable and writable.") from exc
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ releases
    def create_release(self, *, app: str, env: str, kind: str, version: str, previous_version: str | None,
                       plan: dict[str, Any], config: dict[str, Any], started_by: str,
                       host_runs: list[tuple[Host, int, str | None]]) -> ReleaseRecord:
        """Record a new release in state "pending" with its host runs, and take the app/env's active slot.

        Raises ReleaseConflict (naming the running release) when app/env already has an active release.
        """
        kind = ReleaseKind(kind)
        now = self._now()
        try:
            with self._write_engine.begin() as conn:
                release_id = conn.execute(sa.insert(t.releases).values(
                    app=app, env=env, kind=kind.value, version=version, previous_version=previous_version,
                    state=ReleaseState.PENDING.value, plan=plan, config=config, cursor=0, phase="",
                    wait_until=None, message="", requested=None, owner=None, heartbeat_at=None, lease_epoch=0,
                    direction=Direction.FORWARD.value, started_by=started_by, created_at=now, updated_at=now,
                    finished_at=None,
                ).returning(t.releases.c.id)).scalar_one()
                conn.execute(sa.insert(t.active_releases).values(app=app, env=env, release_id=release_id))
                if host_runs:
                    conn.execute(sa.insert(t.host_runs), [
                        {"release_id": release_id, "host": h.name, "address": h.address, "host_spec": host_to_json(h),
                         "batch": batch, "state": HostState.PENDING.value, "step": None, "done_steps": [],
                         "target_version": version, "previous_version": prev, "error": None, "started_at": None,
                         "finished_at": None, "found": None, "target_dir": None, "attention": None}
                        for h, batch, prev in host_runs])
        except IntegrityError as exc:
            active = self.active_release(app, env)
            if active is None:  # the slot was freed meanwhile, or the host list had a duplicate
                names = [h.name for h, _, _ in host_runs]
                dups = sorted({n for n in names if names.count(n) > 1})
                if dups:
                    raise StoreError(f"host {dups[0]} appears twice in the release of {app} ({env})") from exc
                raise ReleaseConflict(f"another release of {app} ({env}) started at the same time; "
                                      "check `graylift status` and try again") from exc
            raise ReleaseConflict(
                f"release #{active.id} of {app} {active.version} ({env}) is running (state {active.state}); "
                f"wait for it, or `graylift abort {active.id}`") from exc
        except SQLAlchemyError as exc:
            raise StoreError(self._failed(exc)) from exc
        return self.get_release(release_id)

    def get_release(self, release_id: int) -> ReleaseRecord:
        if not 0 < release_id < 2**63:
            raise ReleaseNotFound(f"release #{release_id} not found; `graylift history APP --env ENV` lists releases")
        with self._read() as conn:
            row = conn.execute(GET_RELEASE, {"id": release_id}).mappings().first()
        if row is None:
            raise ReleaseNotFound(f"release #{release_id} not found; `graylift history APP --env ENV` lists releases")
        return release_from_row(row)

    def active_release(self, app: str, env: str) -> ReleaseRecord | None:
        query = (sa.select(t.releases).join(t.active_releases, t.active_releases.c.release_id == t.releases.c.id)
                 .where(t.active_releases.c.app == app, t.active_releases.c.env == env))
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else release_from_row(row)

    def active_releases(self) -> list[ReleaseRecord]:
        query = (sa.select(t.releases).join(t.active_releases, t.active_releases.c.release_id == t.releases.c.id)
                 .order_by(t.releases.c.id))
        with self._read() as conn:
            return [release_from_row(r) for r in conn.execute(query).mappings()]

    def list_releases(self, app: str | None = None, env: str | None = None, limit: int = 50) -> list[ReleaseRecord]:
        """Releases, newest first, optionally of one app and/or env."""
        query = sa.select(t.releases).order_by(t.releases.c.id.desc()).limit(limit)
        if app is not None:
            query = query.where(t.releases.c.app == app)
        if env is not None:
            query = query.where(t.releases.c.env == env)
        with self._read() as conn:
            return [release_from_row(r) for r in conn.execute(query).mappings()]

    def update_release(self, release_id: int, **fields: Any) -> ReleaseRecord:
        """Set some of RELEASE_FIELDS. The state changes only through :meth:`transition` (core.state rules)."""
        unknown = set(fields) - RELEASE_FIELDS
        if unknown:
            raise TypeError(f"update_release cannot set {sorted(unknown)}; allowed: {sorted(RELEASE_FIELDS)}")
        if fields.get("requested") is not None:
            fields["requested"] = Request(fields["requested"]).value
        self._update_release_row(release_id, {**fields, "updated_at": self._now()})
        return self.get_release(release_id)

    def transition(self, release_id: int, new: ReleaseState, message: str | None = None, *,
                   expect: ReleaseState | None = None, **fields: Any) -> ReleaseRecord:
        """Move the release to ``new`` by the rules of :mod:`graylift.core.state` (its direction included),
        with its journal entry, in one transaction. ``expect``: fail if the state changed meanwhile."""
        unknown = set(fields) - {"cursor", "phase", "wait_until", "requested", "plan"}
        if unknown:
            raise TypeError(f"transition cannot set {sorted(unknown)}")
        c = t.releases.c
        with self._write() as conn:
            query = sa.select(c.state, c.direction).where(c.id == release_id)
            row = conn.execute(query.with_for_update() if self.is_postgres else query).first()
            if row is None:
                raise ReleaseNotFound(f"release #{release_id} not found")
            current, direction = ReleaseState(row.state), Direction(row.direction)
            if expect is not None and current is not expect:
                raise StateError(f"release #{release_id} became {current.value} meanwhile; look again with "
                                 f"`graylift status {release_id}`")
            check_transition(current, new, direction)
            now = self._now()
            values: dict[str, Any] = {**fields, "state": new.value, "updated_at": now}
            if message is not None:
                values["message"] = message
            if new is ReleaseState.ROLLING_BACK:
                values["direction"] = Direction.BACK.value
            if new.finished:
                values |= {"finished_at": now, "requested": None}
                conn.execute(sa.delete(t.active_releases).where(t.active_releases.c.release_id == release_id))
            if values.get("requested") is not None:
                values["requested"] = Request(values["requested"]).value
            conn.execute(sa.update(t.releases).where(c.id == release_id).values(values))
            fence = self.fence
            conn.execute(sa.insert(t.journal).values(
                release_id=release_id, host=None, step="release", event=new.value, at=now,
                detail={"message": message or "", "from": current.value},
                owner=fence.owner if fence else None, epoch=fence.epoch if fence else None))
        return self.get_release(release_id)

    def finish_release(self, release_id: int, state: str, message: str) -> ReleaseRecord:
        """Mark the release finished (final state + message) and free its app/env for the next release."""
        now = self._now()
        with self._write() as conn:
            done = conn.execute(sa.update(t.releases).where(t.releases.c.id == release_id).values(
                state=ReleaseState(state).value, message=message, finished_at=now, updated_at=now,
                requested=None)).rowcount
            conn.execute(sa.delete(t.active_releases).where(t.active_releases.c.release_id == release_id))
        if not done:
            raise ReleaseNotFound(f"release #{release_id} not found")
        return self.get_release(release_id)

    def request(self, release_id: int, action: str) -> None:
        """Queue a request for the controller driving the release. Raises StateError if it has finished."""
        if action not in {r.value for r in Request}:
            raise StateError(f"unknown request {action!r}; expected one of {', '.join(r.value for r in Request)}")
        request = Request(action)
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.releases).where(t.releases.c.id == release_id, t.releases.c.finished_at.is_(None))
                .values(requested=request.value, updated_at=self._now())).rowcount
        if not done:
            rec = self.get_release(release_id)  # ReleaseNotFound if missing
            raise StateError(f"release #{rec.id} of {rec.app} {rec.version} ({rec.env}) has finished "
                             f"(state {rec.state}); cannot {action} it")

    def clear_request(self, release_id: int) -> None:
        self._update_release_row(release_id, {"requested": None})

    # ------------------------------------------------------------------ the lease
    def claim(self, release_id: int, owner: str, stale_after: float) -> int | None:
        """Take the release's lease if it is free, ours, or its heartbeat is older than ``stale_after`` seconds
        by the database's clock. Returns the new lease epoch, or None.

        The epoch is greater than every epoch any claim of any release was given before: it is the fencing
        token a host checks before it runs a command (``core/fence.py: fenced_command``), so every takeover,
        and a repair under another release of the app, outranks every lease that touched the host earlier."""
        c = t.releases.c
        query = sa.select(c.owner, c.heartbeat_at, c.lease_epoch, c.finished_at).where(c.id == release_id)
        ended: list[int] = []
        if self.is_postgres:  # first without the row lock: whether to claim, and whom a takeover must end first
            with self._write() as conn:
                row = conn.execute(query).first()
                if not _claimable(row, owner, self.db_now(conn), stale_after):
                    return None
                if row is not None and row.owner not in (None, owner):
                    ended = self._end_stuck_sessions(conn)
        with self._write() as conn:
            row = conn.execute(query.with_for_update() if self.is_postgres else query).first()
            now = self.db_now(conn)
            if row is None or not _claimable(row, owner, now, stale_after):
                return None
            if self.is_postgres:  # claims of other releases wait here: no two get the same token
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK)))
            epoch = int(conn.execute(sa.select(sa.func.max(c.lease_epoch))).scalar_one() or 0) + 1
            conn.execute(sa.update(t.releases).where(c.id == release_id).values(
                owner=owner, heartbeat_at=now, lease_epoch=epoch))
            detail: dict[str, Any] = {"owner": owner, "epoch": epoch, "previous_owner": row.owner}
            if ended:
                detail["ended_sessions"] = ended
            conn.execute(sa.insert(t.journal).values(
                release_id=release_id, host=None, step="lease", event="claimed", at=now, owner=owner, epoch=epoch,
                detail=detail))
        return epoch

    @staticmethod
    def _end_stuck_sessions(conn: sa.Connection) -> list[int]:
        """End the graylift sessions of this database that have waited on their client, inside a transaction
        holding a lock on the releases table, for longer than the server's idle-in-transaction timeout: their
        controller froze just after a pipeline's Flush, where the server's timer does not run, and their row
        lock would block the takeover for as long as it stays frozen. Their transaction rolls back;
        thawed, that controller finds its lease lost. Returns their process ids."""
        stuck = conn.execute(sa.text(
            "SELECT a.pid FROM pg_stat_activity a WHERE a.datname = current_database() "
            "AND a.pid <> pg_backend_pid() AND a.application_name = :app AND a.xact_start IS NOT NULL "
            "AND a.wait_event = 'ClientRead' AND a.state_change < now() - make_interval(secs => :idle) "
            "AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.relation = CAST(:table AS regclass)) "
            "ORDER BY a.pid"), {"app": APPLICATION_NAME, "idle": PG_IDLE_TX_MS / 1000,
                                "table": t.releases.name}).scalars().all()
        ended = []
        for pid in stuck:
            try:
                with conn.begin_nested():  # another role's session, without pg_signal_backend: left to time out
                    if conn.execute(sa.select(sa.func.pg_terminate_backend(pid))).scalar():
                        ended.append(pid)
            except SQLAlchemyError:
                continue
        return ended

    def heartbeat(self, fence: Fence) -> bool:
        """Renew the lease (by the database's clock); False (and nothing changed) if it is no longer ours."""
        c = t.releases.c
        with self._write() as conn:
            done = conn.execute(
                sa.update(t.releases).where(c.id == fence.release_id, c.owner == fence.owner,
                                            c.lease_epoch == fence.epoch)
                .values(heartbeat_at=self.db_now(conn))).rowcount
        return bool(done)

    def release_lease(self, fence: Fence) -> None:
        c = t.releases.c
        with self._write() as conn:
            conn.execute(sa.update(t.releases).where(c.id == fence.release_id, c.owner == fence.owner,
                                                     c.lease_epoch == fence.epoch)
                         .values(owner=None, heartbeat_at=None))

    def lease_silence(self, rec: ReleaseRecord) -> float | None:
        """Seconds since the release's controller last wrote its heartbeat (database clock); None if no owner."""
        if rec.owner is None:
            return None
        since = rec.heartbeat_at or rec.updated_at
        return (self.db_now() - since).total_seconds()

    def _update_release_row(self, release_id: int, values: dict[str, Any]) -> None:
        with self._write() as conn:
            done = conn.execute(sa.update(t.releases).where(t.releases.c.id == release_id).values(values)).rowcount
        if not done:
            raise ReleaseNotFound(f"release #{release_id} not found")


def _claimable(row: Any, owner: str, now: datetime, stale_after: float) -> bool:
    """A release's lease may be claimed by ``owner``: the release runs, and the lease is free, ``owner``'s, or
    its heartbeat is older than ``stale_after`` seconds."""
    if row is None or row.finished_at is not None:
        return False
    stale = row.heartbeat_at is None or row.heartbeat_at < now - timedelta(seconds=stale_after)
    return bool(row.owner is None or row.owner == owner or stale)
