"""Scheduled releases: a row per release to start at a time, moved waiting -> starting -> started | failed, or
waiting -> cancelled,
exactly once (the move is conditional on the state it expects, so of several workers only one starts it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from graylift.store import tables as t
from graylift.store.records import from_row
from graylift.store.serverbase import Missing, ServerStore


@dataclass(frozen=True)
class Schedule:
    id: int
    app: str
    env: str
    version: str
    run_at: datetime
    state: str
    message: str
    release_id: int | None
    created_by: str
    created_at: datetime


def _schedule(row: Any) -> Schedule:
    return from_row(Schedule, row)


class ScheduleStore(ServerStore):
    def add_schedule(self, *, app: str, env: str, version: str, run_at: datetime, created_by: str) -> Schedule:
        now = self._now()
        with self._write() as conn:
            sid = conn.execute(sa.insert(t.schedules).values(
                app=app, env=env, version=version, run_at=run_at, state="waiting", message="", release_id=None,
                created_by=created_by, created_at=now, updated_at=now).returning(t.schedules.c.id)).scalar_one()
        return self.schedule(sid)

    def schedule(self, schedule_id: int) -> Schedule:
        if not 0 < schedule_id < 2**63:
            raise Missing(f"no scheduled release #{schedule_id}")
        with self._read() as conn:
            row = conn.execute(sa.select(t.schedules).where(t.schedules.c.id == schedule_id)).first()
        if row is None:
            raise Missing(f"no scheduled release #{schedule_id} (`graylift schedules` lists them)")
        return _schedule(row)

    def schedules(self, *, app: str | None = None, env: str | None = None, state: str | None = None,
                  limit: int = 100) -> list[Schedule]:
        c = t.schedules.c
        return self.newest(_schedule, t.schedules, limit, (c.app, app), (c.env, env), (c.state, state))

    def due_schedules(self, now: datetime) -> list[Schedule]:
        c = t.schedules.c
        with self._read() as conn:
            rows = conn.execute(sa.select(t.schedules).where(c.state == "waiting", c.run_at <= now)
                                .order_by(c.run_at, c.id))
            return [_schedule(r) for r in rows]

    def starting_since(self, before: datetime) -> list[Schedule]:
        """Schedules claimed ("starting") before ``before`` and not moved since: their worker may have died."""
        c = t.schedules.c
        with self._read() as conn:
            rows = conn.execute(sa.select(t.schedules).where(c.state == "starting", c.updated_at <= before)
                                .order_by(c.id))
            return [_schedule(r) for r in rows]

    def release_started_by(self, started_by: str) -> int | None:
        """The newest release started by ``started_by`` (a schedule names itself there), or None."""
        c = t.releases.c
        with self._read() as conn:
            return conn.execute(sa.select(c.id).where(c.started_by == started_by).order_by(c.id.desc()).limit(1)
                                ).scalar()

    def move_schedule(self, schedule_id: int, state: str, message: str, *, expect: str,
                      release_id: int | None = None) -> bool:
        """Move a schedule from ``expect`` to ``state``; False if it was not in ``expect`` (someone else moved it)."""
        return self.move(t.schedules, schedule_id, state, message, expect=expect, release_id=release_id)

