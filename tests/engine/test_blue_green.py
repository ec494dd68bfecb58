"""Blue-green releases on the real engine, store and steps over folder hosts and fake backends.

Two groups, blue (b1, b2) and green (g1, g2), all four first installed by another tool and serving 1.0.0.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import graylift.engine.bluegreen as bluegreen_module
from graylift.api.answers import plan_out
from graylift.core.bluegreen import BlueGreen, make_blue_green_plan, serving_group
from graylift.core.flow import Step
from graylift.core.model import Host, Strategy, StrategyKind
from graylift.core.state import HostState, ReleaseState
from graylift.engine import STALE_AFTER_SECONDS, Engine, crash
from graylift.service import Graylift
from graylift.store import ReleaseRecord, Store
from graylift.testing import FileSwitch
from tests.engine import test_service_safety as service_tests
from tests.engine.conftest import APP, ENV, World
from tests.engine.test_engine_with_fakes import Crash, until_crash
from tests.engine.test_two_controllers import ROOT
from tests.engine.world_files import prepare

BLUE, GREEN = ("b1", "b2"), ("g1", "g2")
HOSTS = [Host(n, f"10.0.0.{i}", group="blue" if n in BLUE else "green") for i, n in enumerate(BLUE + GREEN, 1)]


@pytest.fixture
def bg(make_world: Callable[..., World]) -> World:
    world = make_world(4, strategy=Strategy(kind=StrategyKind.BLUE_GREEN, rollback_window_seconds=0))
    world.hosts = HOSTS
    for host in HOSTS:
        world.install_by_script(host.name, "1.0.0")
    world.watch_the_cap()
    return world


def start(world: World, version: str, *, window: float = 0) -> int:
    """What the service does: the idle group is the one the newest blue-green release left not serving."""
    strategy = Strategy(kind=StrategyKind.BLUE_GREEN, rollback_window_seconds=window)
    serving = serving_group((r.plan for r in world.store.list_releases(APP, ENV)), strategy.blue_green_groups)
    plan = make_blue_green_plan(world.hosts, strategy, serving=serving)
    by_name = {h.name: h for h in world.hosts}
    packages = {version: asyncio.run(world.fleet.package(version)).to_json()}
    rec = world.store.create_release(app=APP, env=ENV, kind="release", version=version,
                                     previous_version=world.store.current_version(APP, ENV) or "1.0.0",
                                     plan=plan.to_dict() | {"packages": packages}, config={}, started_by="test",
                                     host_runs=[(by_name[n], 0, None) for n in plan.hosts])
    return rec.id


def serving(world: World) -> set[str]:
    """Hosts in the load balancer whose app runs."""
    return {h.name for h in HOSTS if h.name not in world.switch.out and world.running(h.name)}


def started_at(world: World, hosts: tuple[str, ...]) -> dict[str, int]:
    """When each host's app was last started (the fake app's ``running`` file is written by its start)."""
    return {h: os.stat(world.folders / h / "running").st_mtime_ns for h in hosts}


def test_release_goes_to_the_idle_group_then_switches_in_before_out(bg: World) -> None:
    rec = bg.drive(start(bg, "2.0.0"))
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert {bg.running(h) for h in GREEN} == {"2.0.0"} and {bg.running(h) for h in BLUE} == {"1.0.0"}
    assert bg.switch.out == set(BLUE)  # blue kept running, out of traffic
    assert bg.silencer.muted == {}
    assert BlueGreen.of(rec.plan).serving == "green"
    # green went out (it served before the first release), was restarted, then the switch: in before out
    calls = bg.switch.calls
    puts = [i for i, c in enumerate(calls) if c[0] == "put_back"]
    outs = [i for i, c in enumerate(calls) if c[0] == "take_out" and c[1] in BLUE]
    assert {calls[i][1] for i in puts} == set(GREEN) and max(puts) < min(outs)
    assert bg.max_out_seen <= 2  # never fewer than one group serving
    steps = [e.step for e in bg.store.journal_entries(rec.id, "g1") if e.event == "done"]
    assert "put_back" not in steps and steps[-1] == "unmute"
    assert [e.step for e in bg.store.journal_entries(rec.id, "b1")] == ["switch", "switch"]  # take_out, quiet
    assert bg.store.current_version(APP, ENV) == "2.0.0"

    # the next release goes to the group now idle: blue
    rec = bg.drive(start(bg, "4.0.0"))
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert {bg.running(h) for h in BLUE} == {"4.0.0"} and {bg.running(h) for h in GREEN} == {"2.0.0"}
    assert bg.switch.out == set(GREEN)


def drive_then(world: World, rid: int, when: Callable[[ReleaseRecord], bool], act: Callable[[], object],
               engine: Engine | None = None) -> ReleaseRecord:
    """Drive the release; the moment ``when`` holds, ``act`` (a person's request) while the driver runs."""

    async def both() -> ReleaseRecord:
        task = asyncio.create_task((engine or world.engine()).drive(rid))
        while not when(world.store.get_release(rid)):
            assert not task.done(), world.store.get_release(rid).message
            await asyncio.sleep(0.02)
        done = act()
        if inspect.isawaitable(done):
            await done
        return await task

    return asyncio.run(both())


def test_rollback_in_the_window_switches_back_without_a_restart(bg: World) -> None:
    bg.drive(start(bg, "2.0.0"))  # green serves 2.0.0, blue 1.0.0 idle
    rid = start(bg, "4.0.0", window=600)
    before: dict[str, int] = {}

    def in_window(rec: ReleaseRecord) -> bool:
        return rec.state is ReleaseState.BAKING

    def roll_back() -> None:
        assert serving(bg) == set(BLUE)
        before.update(started_at(bg, GREEN))
        bg.store.request(rid, "rollback")  # what `graylift rollback APP` queues for an active release

    rec = drive_then(bg, rid, in_window, roll_back)
    assert rec.state == ReleaseState.ROLLED_BACK, rec.message
    assert serving(bg) == set(GREEN) and bg.switch.out == set(BLUE)
    assert started_at(bg, GREEN) == before  # the old group was never restarted
    assert {bg.running(h) for h in BLUE} == {"4.0.0"}  # the new group still runs, out of traffic
    assert {r.state for r in bg.store.host_runs(rid)} == {HostState.ROLLED_BACK}
    assert bg.store.current_version(APP, ENV) == "2.0.0"
    assert "4.0.0" in bg.store.bad_versions(APP, ENV)
    assert BlueGreen.of(rec.plan).serving == "green"
    assert bg.max_out_seen <= 2


def test_promote_ends_the_window(bg: World) -> None:
    rid = start(bg, "2.0.0", window=600)
    rec = drive_then(bg, rid, lambda r: r.state is ReleaseState.BAKING, lambda: bg.store.request(rid, "promote"))
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert serving(bg) == set(GREEN)


def test_an_unhealthy_idle_host_stops_the_release_before_any_switch(bg: World) -> None:
    bg.drive(start(bg, "2.0.0"))
    bg.switch.calls.clear()
    rid = start(bg, "3.0.0")  # 3.0.0 never passes its health check
    rec = bg.drive(rid)
    assert rec.state == ReleaseState.PAUSED and "no switch was made" in rec.message, rec.message
    assert "b1" in rec.message and "b2" in rec.message
    assert serving(bg) == set(GREEN)  # green serves as before
    assert {bg.running(h) for h in BLUE} == {"1.0.0"}  # reverted to what they ran, out of traffic
    assert not [c for c in bg.switch.calls if c[0] == "put_back"]
    assert {r.state for r in bg.store.host_runs(rid)} == {HostState.FAILED}
    assert all(r.error for r in bg.store.host_runs(rid))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(("crash_at", "nth"), [(Step.PUT_BACK, 1), (Step.PUT_BACK, 2), (Step.TAKE_OUT, 1),
                                               (Step.QUIET, 2)])
def test_a_switch_killed_midway_is_finished_by_the_next_controller(bg: World, crash_at: Step, nth: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rid = start(bg, "2.0.0")
    real = bluegreen_module.run_step
    seen: list[str] = []

    async def crashing(step: Step, ctx: Any) -> dict[str, Any]:
        detail = await real(step, ctx)
        if step is crash_at:
            seen.append(ctx.host.name)
            if len(seen) == nth:
                raise Crash
        return detail

    monkeypatch.setattr(bluegreen_module, "run_step", crashing)
    until_crash(lambda: bg.drive(rid))
    assert BlueGreen.of(bg.store.get_release(rid).plan).serving == "blue"  # not yet switched
    assert bg.store.get_release(rid).plan["blue_green"]["switching"] == "green"
    monkeypatch.setattr(bluegreen_module, "run_step", real)
    rec = bg.drive(rid)  # a new controller
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert serving(bg) == set(GREEN) and bg.switch.out == set(BLUE)
    assert "switching" not in rec.plan["blue_green"]
    assert bg.max_out_seen <= 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_switch_back_killed_midway_is_finished(bg: World, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = start(bg, "2.0.0", window=600)
    real = bluegreen_module.run_step
    crashed: list[str] = []

    async def crashing(step: Step, ctx: Any) -> dict[str, Any]:
        detail = await real(step, ctx)
        if step is Step.PUT_BACK and ctx.host.name in BLUE and not crashed:  # blue half back in
            crashed.append(ctx.host.name)
            raise Crash
        return detail

    monkeypatch.setattr(bluegreen_module, "run_step", crashing)
    until_crash(lambda: drive_then(bg, rid, lambda r: r.state is ReleaseState.BAKING,
                                   lambda: bg.store.request(rid, "rollback")))
    assert bg.store.get_release(rid).state == ReleaseState.ROLLING_BACK
    monkeypatch.setattr(bluegreen_module, "run_step", real)
    rec = bg.drive(rid)
    assert rec.state == ReleaseState.ROLLED_BACK, rec.message
    assert serving(bg) == set(BLUE) and bg.switch.out == set(GREEN)


def test_a_backend_that_refuses_the_switch_leaves_the_live_group_serving(bg: World) -> None:
    bg.switch.fails.add(("put_back", "g2"))
    rid = start(bg, "2.0.0")
    rec = bg.drive(rid)
    assert rec.state == ReleaseState.PAUSED and "switch to green failed" in rec.message, rec.message
    assert serving(bg) == set(BLUE)
    bg.switch.fails.clear()
    bg.store.transition(rid, ReleaseState.RUNNING, "resumed", expect=ReleaseState.PAUSED)  # graylift resume
    rec = bg.drive(rid)
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert serving(bg) == set(GREEN)


def blue_green_service(make_world: Callable[..., World], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, *,
                       window: str) -> tuple[World, Graylift]:
    """Four hosts on 1.0.0 (blue and green), and the service over them with a blue-green config."""
    world = make_world(4, strategy=Strategy(kind=StrategyKind.BLUE_GREEN))
    world.hosts = HOSTS
    for host in HOSTS:
        world.install_by_script(host.name, "1.0.0")
    monkeypatch.setattr(service_tests, "CONFIG", service_tests.CONFIG.replace(
        "      canary: {{group: beta, count: 1}}\n      batch: {{size: 2}}\n",
        "      kind: blue_green\n      blue_green: {{groups: [blue, green], rollback_window: " + window + "}}\n"))
    return world, service_tests.make_service(world, tmp_path)


def test_through_the_service_the_idle_group_alternates_and_doctor_expects_it_out(
        make_world: Callable[..., World], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service plans from the config and the store (which group serves), `rollback` of the active release
    switches back, and `doctor` finds nothing wrong with an idle group out of traffic."""
    world, gl = blue_green_service(make_world, tmp_path, monkeypatch, window="10m")

    def in_window(rec: ReleaseRecord) -> bool:
        return rec.state is ReleaseState.BAKING

    view = asyncio.run(gl.plan(APP, ENV, "2.0.0"))  # `graylift plan`, text and -o json
    assert [b.hosts for b in view.plan.batches] == [GREEN] and not view.report.problems
    assert plan_out(view).blue_green[1].startswith("2. switch: green into every load balancer and registry")
    rid = asyncio.run(gl.start_release(APP, ENV, "2.0.0", started_by="test")).id
    rec = drive_then(world, rid, in_window, lambda: gl.request(rid, "promote"), gl.engine())
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert serving(world) == set(GREEN)
    assert asyncio.run(gl.doctor(APP, ENV, repair=False)) == []  # blue is idle, out of traffic: no fault

    rid = asyncio.run(gl.start_release(APP, ENV, "4.0.0", started_by="test")).id
    assert {r.host for r in gl.store.host_runs(rid)} == set(BLUE)  # the idle group now
    before: dict[str, int] = {}

    def roll_back() -> object:
        before.update(started_at(world, GREEN))
        return gl.start_rollback(APP, ENV, to_version=None, started_by="test")  # `graylift rollback APP`

    rec = drive_then(world, rid, in_window, roll_back, gl.engine())
    assert rec.state is ReleaseState.ROLLED_BACK, rec.message
    assert serving(world) == set(GREEN) and started_at(world, GREEN) == before
    assert asyncio.run(gl.doctor(APP, ENV, repair=False)) == []
    assert gl.current_version(APP, ENV) == "2.0.0"


@pytest.mark.parametrize("crash_at", ["after:switch.put_back:g2", "after:switch.take_out:b1"])
def test_a_controller_killed_with_sigkill_in_the_switch_is_finished_by_the_next(tmp_path: Any, crash_at: str
                                                                                ) -> None:
    """A real process, SIGKILLed by GRAYLIFT_CRASH_AT in the middle of the switch; the next controller process
    (`graylift resume`) finishes it: green in, blue out, the release succeeded."""
    world = tmp_path / "world"
    prepare(world)
    url = f"sqlite:///{tmp_path}/state.db"
    strategy = Strategy(kind=StrategyKind.BLUE_GREEN, rollback_window_seconds=0)
    plan = make_blue_green_plan(HOSTS, strategy, serving="blue")
    by_name = {h.name: h for h in HOSTS}
    with Store.open(url) as store:
        rid = store.create_release(app=APP, env=ENV, kind="release", version="1.0.0", previous_version=None,
                                   plan=plan.to_dict(), config={}, started_by="test",
                                   host_runs=[(by_name[n], 0, None) for n in plan.hosts]).id

    def controller(owner: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tests.engine.controller_proc", url, str(world), str(rid), owner],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ | env)

    killed = controller("first", {crash.ENV: crash_at})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    with Store.open(url) as store:
        assert store.get_release(rid).plan["blue_green"]["switching"] == "green"
    time.sleep(STALE_AFTER_SECONDS + 1)  # its lease goes stale: `graylift resume` may take it over
    done = controller("second", {})
    assert done.returncode == 0, done.stdout + done.stderr
    with Store.open(url) as store:
        rec = store.get_release(rid)
        assert rec.state is ReleaseState.SUCCEEDED, rec.message
        assert BlueGreen.of(rec.plan).serving == "green" and "switching" not in rec.plan["blue_green"]
    assert FileSwitch(world / "lb").out() == set(BLUE)
    assert {(world / "hosts" / h / "running").read_text().strip() for h in GREEN} == {"1.0.0"}


def test_after_the_window_a_rollback_is_a_blue_green_release_onto_the_idle_group(
        make_world: Callable[..., World], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the window is over, `graylift rollback` starts a rollback release of the previous good version; it goes
    to the idle group, which still runs that version: its pre-check finds it there, nothing is restarted."""
    world, gl = blue_green_service(make_world, tmp_path, monkeypatch, window="0")
    rid = asyncio.run(gl.start_release(APP, ENV, "2.0.0", started_by="test")).id
    assert service_tests.drive(gl, rid).state is ReleaseState.SUCCEEDED
    before = started_at(world, BLUE)
    rec = asyncio.run(gl.start_rollback(APP, ENV, to_version=None, started_by="test"))
    assert rec.version == "1.0.0" and {r.host for r in gl.store.host_runs(rec.id)} == set(BLUE)
    rec = service_tests.drive(gl, rec.id)
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert serving(world) == set(BLUE) and started_at(world, BLUE) == before
    assert "2.0.0" in gl.store.bad_versions(APP, ENV)
