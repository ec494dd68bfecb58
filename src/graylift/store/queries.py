"""Read-only queries the server needs over the release tables: filtered pages of releases, a host's timeline
across releases, the whole journal after an id (for the notifier and the metrics), counts for /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from graylift.store import tables as t
from graylift.store.records import JournalEntry, ReleaseRecord, journal_from_row, release_from_row
from graylift.store.serverbase import ServerStore, Visible


@dataclass(frozen=True)
class HostVisit:
    """One host's part in one release."""

    release_id: int
    kind: str
    version: str
    release_state: str
    state: str
    step: str | None
    target_version: str
    previous_version: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class Queries(ServerStore):
    def releases(self, *, visible: Visible | None, app: str | None = None, env: str | None = None,
                 state: str | None = None, kind: str | None = None, before_id: int | None = None,
                 limit: int = 50) -> list[ReleaseRecord]:
        """Newest first, filtered; ``before_id`` pages on (the next page starts below the last id seen)."""
        c = t.releases.c
        return self.newest(release_from_row, t.releases, limit, (c.app, app), (c.env, env), (c.state, state),
                           (c.kind, kind), before_id=before_id, visible=visible)

    def app_envs(self) -> list[tuple[str, str]]:
        """Every (app, env) that has had a release or has hosts in the built-in inventory."""
        with self._read() as conn:
            released = conn.execute(sa.select(t.releases.c.app, t.releases.c.env).distinct()).all()
            hosted = conn.execute(sa.select(t.hosts.c.app, t.hosts.c.env).distinct()).all()
        return sorted({(a, e) for a, e in [*released, *hosted]})

    def host_timeline(self, app: str, env: str, host: str, limit: int = 100) -> list[HostVisit]:
        r, h = t.releases.c, t.host_runs.c
        query = (sa.select(r.id.label("release_id"), r.kind, r.version, r.state.label("release_state"), h.state,
                           h.step, h.target_version, h.previous_version, h.error, h.started_at, h.finished_at)
                 .join(t.host_runs, h.release_id == r.id)
                 .where(r.app == app, r.env == env, h.host == host).order_by(r.id.desc()).limit(limit))
        with self._read() as conn:
            return [HostVisit(**row) for row in conn.execute(query).mappings()]

    def journal_after(self, after_id: int, limit: int = 500) -> list[JournalEntry]:
        """Every release's journal entries after ``after_id``, in write order."""
        c = t.journal.c
        query = sa.select(t.journal).where(c.id > after_id).order_by(c.id).limit(limit)
        with self._read() as conn:
            return [journal_from_row(r) for r in conn.execute(query).mappings()]

    def last_journal_id(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(t.journal.c.id))).scalar() or 0)

    def release_counts(self) -> dict[tuple[str, str], int]:
        """(kind, state) -> number of releases."""
        c = t.releases.c
        with self._read() as conn:
            return {(r.kind, r.state): int(r.n) for r in conn.execute(
                sa.select(c.kind, c.state, sa.func.count().label("n")).group_by(c.kind, c.state))}

    def active_host_counts(self) -> dict[str, int]:
        """Host run states of the releases that are not finished."""
        h = t.host_runs.c
        query = (sa.select(h.state, sa.func.count().label("n"))
                 .join(t.active_releases, t.active_releases.c.release_id == h.release_id).group_by(h.state))
        with self._read() as conn:
            return {r.state: int(r.n) for r in conn.execute(query)}
