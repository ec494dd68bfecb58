"""The engine against fakes: fast, exact tests of its state machine, its undo and its crash recovery.

The hosts are folders on this machine (a LocalTransport whose commands see the app's deploy dir mapped to
the host's own folder); the load balancer and the silencer are in-memory fakes that record what was asked.
Everything else, the store (SQLite), the steps, the plan, the policies, is the real code.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

import graylift.engine.hosts as engine_module
from graylift.adapters.health import CommandProbe
from graylift.core.flow import RELEASE_FLOW, Step
from graylift.core.model import OnFailure, Strategy
from graylift.core.state import HostState, ReleaseState
from graylift.schema import render_command
from tests.engine.conftest import APP, ENV, World, hosts_of

HOSTS = hosts_of(6)


class Crash(BaseException):
    """Stands for kill -9: nothing in the engine catches it."""


def until_crash(drive: Callable[[], object]) -> None:
    """Run ``drive`` until the simulated kill. The subprocess transports it leaves behind are collected here,
    inside the test (which ignores their warnings), not in whichever test the garbage collector runs next."""
    with pytest.raises(Crash):
        drive()
    gc.collect()


def assert_clean(w: World, version: str) -> None:
    """Every host on ``version``, running it, in the LB, unmuted."""
    assert {w.current(h.name) for h in HOSTS} == {version}
    assert {w.running(h.name) for h in HOSTS} == {version}
    assert w.switch.out == set()
    assert w.silencer.muted == {}


def test_release_and_the_order_of_steps(world: World) -> None:
    rec = world.release("1.0.0")
    assert rec.state == ReleaseState.SUCCEEDED
    assert_clean(world, "1.0.0")
    rec = world.release("2.0.0")
    assert rec.state == ReleaseState.SUCCEEDED
    assert_clean(world, "2.0.0")
    done = [e.step for e in world.store.journal_entries(rec.id, "h3") if e.event == "done"]
    assert done == [s.value for s in RELEASE_FLOW]
    assert world.store.current_version(APP, ENV) == "2.0.0"
    assert {r.previous_version for r in world.store.host_runs(rec.id)} == {"1.0.0"}


def test_a_probe_naming_the_version_checks_the_running_one_before_and_the_target_after(world: World) -> None:
    """``{version}`` in a health probe is the version the host runs at that moment: in the pre-check the one
    there (a probe of the target's version would find every host unhealthy and skip it), after the start the
    target."""
    def probes_for(values: dict[str, str]) -> list[CommandProbe]:
        return [CommandProbe(render_command("grep -qx {version} {deploy_dir}/running", values))]

    world.fleet.runtime = replace(world.fleet.runtime, probes=[], probes_for=probes_for)
    assert world.release("1.0.0").state == ReleaseState.SUCCEEDED
    rec = world.release("2.0.0")
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert set(world.states(rec.id).values()) == {HostState.DONE}
    assert_clean(world, "2.0.0")
    healthy = [e.detail.get("healthy") for e in world.store.journal_entries(rec.id, "h3")
               if e.step == "precheck" and e.event == "done"]
    assert healthy == [True]


# the simulated kill leaves asyncio subprocess transports to be collected after their loop closed
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("crash_after", list(RELEASE_FLOW))
def test_a_crash_right_after_any_step_is_resumed(world: World, crash_after: Step,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 right after a step's side effect, before it is journaled done: the next controller
    re-runs that step (every step is safe to repeat) and finishes the release cleanly."""
    world.release("1.0.0")
    rid = world.start("2.0.0")
    real_run_step = engine_module.run_step
    crashed: list[str] = []

    async def crashing(step: Step, ctx: Any) -> dict[str, Any]:
        detail = await real_run_step(step, ctx)
        if step is crash_after and ctx.host.name == "h1" and not crashed:  # the canary: alone in its batch
            crashed.append(ctx.host.name)
            raise Crash
        return detail

    monkeypatch.setattr(engine_module, "run_step", crashing)
    until_crash(lambda: world.drive(rid))
    assert world.store.host_run(rid, "h1").state == HostState.RUNNING  # caught mid-flow
    rec = world.drive(rid)  # a new controller
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert_clean(world, "2.0.0")
    begun = [e for e in world.store.journal_entries(rid, "h1") if e.step == crash_after.value]
    assert [e.event for e in begun] == ["begin", "begin", "done"]  # re-run once, done once


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_unmute_gets_the_silence_its_walks_mute_answered_a_resumed_walk_none(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unmute of a host is handed the id its mute answered in the same walk (the silencer may expire that
    one directly); a walk resumed after the mute (another controller, a crash) has none, so the silencer looks
    for the host's silences as before."""
    rec = world.release("1.0.0")
    muted = {e.host: e.detail["silences"][world.silencer.name] for e in world.store.journal_entries(rec.id)
             if e.step == "mute" and e.event == "done"}
    assert world.silencer.unmuted_with == muted and set(muted) == {h.name for h in HOSTS}
    rid = world.start("2.0.0")
    real_run_step = engine_module.run_step
    crashed: list[str] = []

    async def crashing(step: Step, ctx: Any) -> dict[str, Any]:
        detail = await real_run_step(step, ctx)
        if step is Step.TAKE_OUT and ctx.host.name == "h1" and not crashed:  # the canary: muted and out
            crashed.append(ctx.host.name)
            raise Crash  # then its controller dies
        return detail

    monkeypatch.setattr(engine_module, "run_step", crashing)
    world.silencer.unmuted_with.clear()
    until_crash(lambda: world.drive(rid))
    monkeypatch.setattr(engine_module, "run_step", real_run_step)
    assert world.drive(rid).state == ReleaseState.SUCCEEDED
    assert_clean(world, "2.0.0")
    assert world.silencer.unmuted_with["h1"] is None  # its mute was the dead controller's walk
    assert all(world.silencer.unmuted_with[h.name] == f"silence-{h.name}" for h in HOSTS if h.name != "h1")


def test_failed_health_reverts_the_host_and_pauses(world: World) -> None:
    world.release("1.0.0")
    rec = world.release("3.0.0")  # starts, but its health check fails
    assert rec.state == ReleaseState.PAUSED
    canary = world.store.host_run(rec.id, "h1")
    assert canary.state == HostState.FAILED and "health" in (canary.error or "")
    assert all(r.state == HostState.PENDING for r in world.store.host_runs(rec.id) if r.host != "h1")
    assert_clean(world, "1.0.0")  # the canary is back on 1.0.0, in the LB, unmuted
    undo = [e for e in world.store.journal_entries(rec.id, "h1") if e.step == "revert"]
    assert undo[0].detail["steps"] == ["stop", "switch", "start", "health", "put_back", "unmute"]


def test_failure_budget_rollback_policy_rolls_back_done_hosts(world: World) -> None:
    world.release("1.0.0")
    world.fleet.runtime.strategy = Strategy(batch_size=2, on_failure=OnFailure.ROLLBACK)
    rid = world.start("3.0.0")
    rec = world.drive(rid)
    assert rec.state == ReleaseState.ROLLED_BACK
    assert_clean(world, "1.0.0")


def test_rollback_requested_mid_release_stops_at_a_safe_point(world: World,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    world.release("1.0.0")
    rid = world.start("2.0.0")
    real_run_step = engine_module.run_step

    async def request_rollback_in_batch_1(step: Step, ctx: Any) -> dict[str, Any]:
        if step is Step.UNMUTE and ctx.host.name in world.store.get_release(rid).plan["batches"][1]["hosts"]:
            world.store.request(rid, "rollback")
        return await real_run_step(step, ctx)

    monkeypatch.setattr(engine_module, "run_step", request_rollback_in_batch_1)
    rec = world.drive(rid)
    assert rec.state == ReleaseState.ROLLED_BACK
    states = {r.host: r.state for r in world.store.host_runs(rid)}
    assert {states[h] for h in ("h1", "h2", "h3")} == {HostState.ROLLED_BACK}  # canary + batch 1
    assert {states[h] for h in ("h4", "h5", "h6")} == {HostState.PENDING}  # never touched
    assert_clean(world, "1.0.0")


def test_pause_then_resume_leaves_no_host_half_done(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.release("1.0.0")
    rid = world.start("2.0.0")
    real_run_step = engine_module.run_step

    async def pause_during_canary(step: Step, ctx: Any) -> dict[str, Any]:
        if step is Step.STOP and ctx.host.name == "h1":
            world.store.request(rid, "pause")
        return await real_run_step(step, ctx)

    monkeypatch.setattr(engine_module, "run_step", pause_during_canary)
    rec = world.drive(rid)
    assert rec.state == ReleaseState.PAUSED
    assert {r.state for r in world.store.host_runs(rid)} <= {HostState.DONE, HostState.PENDING}
    assert world.switch.out == set() and world.silencer.muted == {}
    world.store.transition(rid, ReleaseState.RUNNING, "resumed")  # what `graylift resume` does
    monkeypatch.setattr(engine_module, "run_step", real_run_step)
    assert world.drive(rid).state == ReleaseState.SUCCEEDED
    assert_clean(world, "2.0.0")
