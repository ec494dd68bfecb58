"""The gates before a release, through the service over the fakes: a release outside its windows is refused
with the next opening (or goes with a journaled reason), rollbacks are never held, a scheduled release is
started once, when due, by the worker pool; a version reaches prod only after it succeeded in staging."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from graylift.core.state import ReleaseState
from graylift.core.windows import DAYS
from graylift.errors import ConfigError, OutsideWindow, PlanError
from graylift.pool import WorkerPool
from graylift.service import Graylift
from tests.engine.conftest import APP, ENV
from tests.engine.test_service_safety import CONFIG, make_service


def with_windows(gl: Graylift, windows: str, after: str = "") -> Graylift:
    """The same service, its app given ``strategy.windows`` (and ``after``, more lines of the app)."""
    text = gl.config_path.read_text().replace("      batch: {size: 2}\n",
                                              f"      batch: {{size: 2}}\n      windows: {windows}\n{after}")
    assert text != gl.config_path.read_text()
    gl.config_path.write_text(text)
    fresh = Graylift(gl.config_path, fleet=gl._fleet)
    gl.close()
    return fresh


def closed_now() -> str:
    """A window that is not open now: one hour, two days from today."""
    day = DAYS[(datetime.now(UTC).weekday() + 2) % 7]
    return f'[{{days: {day}, hours: "03:00-04:00", tz: UTC}}]'


@pytest.fixture
def gl(make_world: Any, tmp_path: Path) -> Graylift:
    assert "batch: {{size: 2}}" in CONFIG
    return make_service(make_world(8), tmp_path)


def test_outside_its_windows_a_release_is_refused_with_the_next_opening(gl: Graylift) -> None:
    gl = with_windows(gl, closed_now())
    with pytest.raises(OutsideWindow, match=r"released only in its release windows \(\w+ 03:00-04:00 UTC\).*"
                                            r"next opens \d{4}-\d\d-\d\dT03:00\+00:00.*graylift schedule"):
        asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="ann"))
    assert gl.store.list_releases(APP, ENV) == []  # nothing recorded, no host touched


def test_a_reason_lets_it_go_and_is_journaled_and_a_rollback_is_never_held(gl: Graylift, make_world: Any) -> None:
    first = asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="ann"))
    assert asyncio.run(gl.engine().drive(first.id)).state is ReleaseState.SUCCEEDED
    gl = with_windows(gl, closed_now())
    rec = asyncio.run(gl.start_release(APP, ENV, "2.0.0", started_by="ann", outside_window="hotfix INC-42"))
    override = [e for e in gl.store.journal_entries(rec.id) if e.step == "window"]
    assert [(e.event, e.detail) for e in override] == [("override", {"reason": "hotfix INC-42", "by": "ann"})]
    assert asyncio.run(gl.engine().drive(rec.id)).state is ReleaseState.SUCCEEDED
    back = asyncio.run(gl.start_rollback(APP, ENV, to_version=None, started_by="ann"))  # no window asked
    assert asyncio.run(gl.engine().drive(back.id)).state is ReleaseState.SUCCEEDED


def test_a_schedule_starts_once_when_due(gl: Graylift) -> None:
    run_at = gl.store.db_now() + timedelta(seconds=1)
    sched = gl.schedule_release(APP, ENV, "1.0.0", run_at, by="ann")
    assert sched.state == "waiting" and gl.start_due_schedules() == []  # not yet due
    time.sleep(1.1)
    [started] = gl.start_due_schedules()
    assert started.state == "started" and started.release_id is not None
    rec = gl.store.get_release(started.release_id)
    assert rec.version == "1.0.0" and rec.started_by == f"ann (schedule #{sched.id})"
    assert gl.start_due_schedules() == []  # started exactly once


def test_a_schedule_being_started_reads_starting_never_started_without_its_release(gl: Graylift,
                                                                                      monkeypatch: Any) -> None:
    """Between the claim and the release's record (a preflight can take a minute) a reader sees "starting"; the
    CI once saw "started" with no release there."""
    sched = gl.schedule_release(APP, ENV, "1.0.0", gl.store.db_now() + timedelta(seconds=0.5), by="ann")
    seen = []
    start_release = gl.start_release

    async def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(gl.schedule_store().schedule(sched.id))
        return await start_release(*args, **kwargs)

    monkeypatch.setattr(gl, "start_release", watched)
    time.sleep(0.6)
    [started] = gl.start_due_schedules()
    assert [(s.state, s.release_id) for s in seen] == [("starting", None)]
    assert started.state == "started" and started.release_id is not None


def test_a_schedule_left_starting_by_a_dead_worker_is_settled_by_the_next(gl: Graylift, monkeypatch: Any) -> None:
    """A worker killed between the claim and the release's record leaves "starting": after STARTING_AT_MOST the
    next worker records the release the dead one started, or fails the schedule saying why."""
    from graylift.service import schedules

    store = gl.schedule_store()
    soon = gl.store.db_now() + timedelta(hours=1)
    got_there = gl.schedule_release(APP, ENV, "1.0.0", soon, by="ann")
    died_before = gl.schedule_release(APP, ENV, "1.0.0", soon, by="bob")
    for sched in (got_there, died_before):
        assert store.move_schedule(sched.id, "starting", "preflight and start", expect="waiting")
    rec = asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by=schedules.started_by(got_there)))
    assert gl.start_due_schedules() == []  # not yet: a preflight may still be running
    monkeypatch.setattr(schedules, "STARTING_AT_MOST", timedelta(0))
    settled = {s.id: s for s in gl.start_due_schedules()}
    assert (settled[got_there.id].state, settled[got_there.id].release_id) == ("started", rec.id)
    assert settled[died_before.id].state == "failed" and settled[died_before.id].release_id is None
    assert "schedule it again" in settled[died_before.id].message
    assert gl.start_due_schedules() == []


def test_a_schedule_that_cannot_start_says_why(gl: Graylift) -> None:
    # far enough ahead that a busy machine does not find it in the past before it is recorded; then past it
    at = gl.store.db_now() + timedelta(seconds=2)
    gl.schedule_release(APP, ENV, "9.9.9", at, by="ann")
    while gl.store.db_now() <= at:
        time.sleep(0.1)
    [failed] = gl.start_due_schedules()
    assert failed.state == "failed" and "9.9.9" in failed.message and failed.release_id is None


def test_bad_schedules_are_refused_with_one_line(gl: Graylift) -> None:
    now = gl.store.db_now()
    with pytest.raises(PlanError, match="is in the past"):
        gl.schedule_release(APP, ENV, "1.0.0", now - timedelta(minutes=1), by="ann")
    with pytest.raises(PlanError, match="has no time zone"):
        gl.schedule_release(APP, ENV, "1.0.0", datetime(2030, 1, 1, 3), by="ann")
    with pytest.raises(ConfigError, match="unknown app 'nope'"):
        gl.schedule_release("nope", ENV, "1.0.0", now + timedelta(hours=1), by="ann")
    sched = gl.schedule_release(APP, ENV, "1.0.0", now + timedelta(hours=1), by="ann")
    assert gl.cancel_schedule(sched.id, by="bob").state == "cancelled"
    with pytest.raises(PlanError, match="is cancelled, not waiting"):
        gl.cancel_schedule(sched.id, by="bob")


def test_a_schedule_outside_the_windows_is_refused(gl: Graylift) -> None:
    gl = with_windows(gl, closed_now())
    with pytest.raises(OutsideWindow, match="pick a time inside a window"):
        gl.schedule_release(APP, ENV, "1.0.0", gl.store.db_now() + timedelta(minutes=5), by="ann")


def test_the_worker_pool_starts_and_drives_a_due_schedule(gl: Graylift, make_world: Any) -> None:
    sched = gl.schedule_release(APP, ENV, "1.0.0", gl.store.db_now() + timedelta(seconds=1), by="ann")
    pool = WorkerPool(gl, interval=0.1)
    pool.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            found = gl.schedule_store().schedule(sched.id)
            if found.release_id is not None and gl.store.get_release(found.release_id).finished:
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.1)
    finally:
        pool.stop()
    assert gl.store.get_release(found.release_id).state is ReleaseState.SUCCEEDED


def test_a_version_reaches_prod_only_after_it_succeeded_in_staging(gl: Graylift) -> None:
    gl = with_windows(gl, "[]", "    envs:\n      prod: {promotion: {after: staging}}\n")
    gl.store.replace_hosts(APP, "staging", gl.store.list_hosts(APP, ENV))
    with pytest.raises(PlanError, match="goes to prod only after it succeeded in staging, and it has not: "
                                        "release it there first"):
        asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="ann"))
    with pytest.raises(PlanError, match=r"comes to prod from staging \(promotion.after\), not from test"):
        asyncio.run(gl.promote_env(APP, "1.0.0", from_env="test", to_env=ENV, started_by="ann"))
    staged = asyncio.run(gl.start_release(APP, "staging", "1.0.0", started_by="ann"))  # staging has no gate
    assert asyncio.run(gl.engine().drive(staged.id)).state is ReleaseState.SUCCEEDED
    rec = asyncio.run(gl.promote_env(APP, "1.0.0", from_env="staging", to_env=ENV, started_by="ann"))
    assert asyncio.run(gl.engine().drive(rec.id)).state is ReleaseState.SUCCEEDED


def test_the_gate_waits_min_age_and_refuses_what_was_rolled_back(gl: Graylift) -> None:
    gl = with_windows(gl, "[]", "    envs:\n      prod: {promotion: {after: staging, min_age: 3600}}\n")
    gl.store.replace_hosts(APP, "staging", gl.store.list_hosts(APP, ENV))
    for version in ("1.0.0", "2.0.0"):
        rec = asyncio.run(gl.start_release(APP, "staging", version, started_by="ann"))
        assert asyncio.run(gl.engine().drive(rec.id)).state is ReleaseState.SUCCEEDED
    with pytest.raises(PlanError, match=r"prod takes it 1:00:00 after that \(promotion.min_age\): from "):
        asyncio.run(gl.start_release(APP, ENV, "2.0.0", started_by="ann"))
    back = asyncio.run(gl.start_rollback(APP, "staging", to_version=None, started_by="ann"))
    assert asyncio.run(gl.engine().drive(back.id)).state is ReleaseState.SUCCEEDED
    with pytest.raises(PlanError, match=r"2\.0\.0 was rolled back in staging"):
        asyncio.run(gl.start_release(APP, ENV, "2.0.0", started_by="ann"))


def test_three_versions_in_service_at_once_are_refused_and_the_compatibility_note_is_shown(
        make_world: Any, tmp_path: Path) -> None:
    world = make_world(8)
    gl = make_service(world, tmp_path)
    gl = with_windows(gl, "[]", '    compatibility: "2.x reads 1.x sessions; 1.x ignores the new cart field"\n')
    for host in world.hosts:
        world.install_by_script(host.name, "1.0.0")
    world.install_by_script("h2", "2.0.0")  # a release that stopped half way, say
    view = asyncio.run(gl.plan(APP, ENV, "4.0.0"))
    assert view.report.problems == ["the hosts serve 1.0.0 (7 hosts) and 2.0.0 (1 host); releasing 4.0.0 would "
                                    "put three versions in service at once: first bring every host to one of "
                                    "them (finish or roll back the last release)"]
    assert "compatibility: 2.x reads 1.x sessions; 1.x ignores the new cart field" in view.report.notes
    assert asyncio.run(gl.plan(APP, ENV, "2.0.0")).report.problems == []  # finishing the last one is fine
