"""Release windows and scheduled releases.

``strategy.windows`` (per app, per env through ``envs``) says when a release may start; a release asked for
outside them is refused with the next opening, unless given a reason (journaled). Rollbacks are never held
to a window. ``graylift schedule APP VERSION --env E --at TIME`` records a release to start at a time (which
must fall inside a window); the worker pool of ``graylift serve`` / ``graylift worker`` starts it when it is
due, through the same ``start_release`` (preflight, one active release per app/env) as a person would, and
records the release or the reason it could not start.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from graylift.errors import GrayliftError, PlanError
from graylift.service.releases import ReleaseService
from graylift.store.schedules import Schedule, ScheduleStore

log = logging.getLogger("graylift.schedules")

#: A schedule "starting" for longer than this lost its worker (killed between the claim and the release's record):
#: the next worker records the release it had started, or fails it with why. A preflight of 1000 hosts takes
#: about 80 s.
STARTING_AT_MOST = timedelta(minutes=15)


def started_by(due: Schedule) -> str:
    return f"{due.created_by} (schedule #{due.id})"


class ScheduleService(ReleaseService):
    def schedule_store(self) -> ScheduleStore:
        return ScheduleStore.of(self.store)

    def schedule_release(self, app: str, env: str, version: str, run_at: datetime, *, by: str) -> Schedule:
        self.config.app_for_env(app, env)  # an unknown app or env name is refused here, not when it is due
        from graylift.adapters.artifacts import check_version

        check_version(app, version)
        if run_at.tzinfo is None:
            raise PlanError(f"--at {run_at.isoformat()} has no time zone; give one (e.g. +08:00 or Z)")
        now = self.store.db_now()
        if run_at <= now:
            raise PlanError(f"--at {run_at.isoformat(timespec='seconds')} is in the past (now "
                            f"{now.isoformat(timespec='seconds')}); use `graylift release` to start now")
        self.check_window(app, env, run_at, version=version, scheduling=True)
        return self.schedule_store().add_schedule(app=app, env=env, version=version, run_at=run_at, created_by=by)

    def cancel_schedule(self, schedule_id: int, *, by: str) -> Schedule:
        store = self.schedule_store()
        found = store.schedule(schedule_id)
        if not store.move_schedule(schedule_id, "cancelled", f"cancelled by {by}", expect="waiting"):
            raise PlanError(f"scheduled release #{schedule_id} is {found.state}, not waiting: nothing to cancel")
        return store.schedule(schedule_id)

    def start_due_schedules(self) -> list[Schedule]:
        """Start every waiting schedule that is due (each exactly once across workers); returns them as moved."""
        store = self.schedule_store()
        moved = self._settle_lost_starts(store)
        for due in store.due_schedules(self.store.db_now()):
            if not store.move_schedule(due.id, "starting", "preflight and start", expect="waiting"):
                continue  # another worker took it; "starting" until the release is recorded, never "started" without it
            who = started_by(due)
            try:
                self.check_window(due.app, due.env, self.store.db_now(), version=due.version, scheduling=True)
                rec = asyncio.run(self.start_release(due.app, due.env, due.version, started_by=who))
            except GrayliftError as exc:
                store.move_schedule(due.id, "failed", str(exc), expect="starting")
                log.warning("scheduled release #%s of %s %s (%s) did not start: %s", due.id, due.app, due.version,
                            due.env, exc)
            else:
                store.move_schedule(due.id, "started", f"release #{rec.id}", expect="starting", release_id=rec.id)
                log.info("scheduled release #%s started release #%s", due.id, rec.id)
            moved.append(store.schedule(due.id))
        return moved

    def _settle_lost_starts(self, store: ScheduleStore) -> list[Schedule]:
        """A schedule left "starting" by a dead worker: started if its release was recorded, else failed."""
        settled = []
        for lost in store.starting_since(self.store.db_now() - STARTING_AT_MOST):
            rid = store.release_started_by(started_by(lost))
            if rid is not None:
                ok = store.move_schedule(lost.id, "started", f"release #{rid}", expect="starting", release_id=rid)
            else:
                ok = store.move_schedule(lost.id, "failed", "the worker starting it stopped before the release was "
                                         "recorded; schedule it again", expect="starting")
            if ok:
                log.warning("scheduled release #%s was left starting by a worker that stopped; now %s", lost.id,
                            "started" if rid is not None else "failed")
                settled.append(store.schedule(lost.id))
        return settled
