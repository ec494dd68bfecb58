"""The one-command restart (graylift.steps.restart): stop, switch, start and the health wait go to the host as
ONE command, and are journaled step by step with the same undo as when they run one at a time.

The hosts are folders run by a real ``sh`` (graylift.testing.FolderTransport); the runtime asks for the restart
in one command the way the wiring does for every configured app (``fuse_host_commands``, probes per host).
"""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import graylift.adapters.transport.parts as parts_module
import graylift.engine.hosts as engine_module
from graylift.core.flow import RELEASE_FLOW, UNDO_ORDER
from graylift.core.state import HostState, ReleaseState
from graylift.errors import HostUnreachable
from graylift.testing import FakeSwitch
from tests.engine.conftest import World

RESTART = ["stop", "switch", "start", "health"]


class Crash(BaseException):
    """Stands for kill -9: nothing in the engine catches it."""


def at_once(world: World, **changes: Any) -> World:
    rt = world.fleet.runtime
    probes = list(rt.probes)
    world.fleet.runtime = replace(rt, probes=[], probes_for=lambda values: probes, fuse_host_commands=True,
                                  **changes)
    return world


def assert_clean(w: World, version: str) -> None:
    """Every host on ``version``, running it, in the LB, unmuted."""
    assert {w.current(h.name) for h in w.hosts} == {version}
    assert {w.running(h.name) for h in w.hosts} == {version}
    assert w.switch.out == set()
    assert w.silencer.muted == {}


def events(world: World, release_id: int, host: str) -> list[tuple[str, str]]:
    return [(e.step, e.event) for e in world.store.journal_entries(release_id, host)]


def test_a_restart_is_one_host_command_and_every_step_is_journaled(make_world: Any) -> None:
    one, apart = at_once(make_world()), make_world()
    sent, last = {}, {}
    for w, name in ((one, "one"), (apart, "apart")):
        assert w.release("1.0.0").state == ReleaseState.SUCCEEDED
        before = len(w.fleet.transports["h3"].commands)
        rec = w.release("2.0.0")
        assert rec.state == ReleaseState.SUCCEEDED, rec.message
        assert_clean(w, "2.0.0")
        sent[name], last[name] = len(w.fleet.transports["h3"].commands) - before, rec.id
        done = [e.step for e in w.store.journal_entries(rec.id, "h3") if e.event == "done"]
        assert done == [s.value for s in RELEASE_FLOW]
    # switch, start and health rode on the stop's command, and so did the read of `current` the stop is
    # rendered with (checked on the host against the pre-check's); the pre-check's health on its survey
    assert sent["one"] == sent["apart"] - 5
    stop_begin = [e for e in one.store.journal_entries(last["one"], "h3") if e.step == "stop" and e.event == "begin"]
    assert stop_begin[0].detail["with"] == ["switch", "start", "health"]
    assert "undo" in stop_begin[0].detail
    health = [e for e in one.store.journal_entries(last["one"], "h3") if e.step == "health" and e.event == "done"]
    assert health[0].detail["attempts"] == 1 and health[0].detail["seconds"] >= 0


def test_current_moved_after_the_pre_check_the_stop_is_for_what_current_points_at(world: World) -> None:
    """The restart command checks on the host that ``current`` is still where the pre-check found it before it
    stops anything; another tool moved it in between (here: while the host was taken out): the command stops
    nothing, graylift reads ``current`` and stops the release it points at, with that release's version."""
    at_once(world, stop_command="echo {version} > {deploy_dir}/stopped; rm -f {deploy_dir}/running")
    world.release("1.0.0")
    world.release("2.0.0")
    moved: list[str] = []

    def by_hand(switch: FakeSwitch) -> None:
        if "h3" in switch.out and not moved:  # h3 is out: another tool points it back at 1.0.0
            link = world.folders / "h3" / "current"
            link.unlink()
            link.symlink_to(Path("releases") / "1.0.0")
            moved.append("h3")

    world.switch.observe = by_hand
    sent = {h: len(world.fleet.transports[h].commands) for h in ("h3", "h2")}  # both of batch 1
    rec = world.release("4.0.0")
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert moved == ["h3"]
    assert (world.folders / "h3" / "stopped").read_text().strip() == "1.0.0"  # the stop of what ran there
    assert (world.folders / "h2" / "stopped").read_text().strip() == "2.0.0"
    stopped = [e.detail for e in world.store.journal_entries(rec.id, "h3") if e.step == "stop" and e.event == "done"]
    assert stopped[0]["stopped"] == "1.0.0"
    assert_clean(world, "4.0.0")
    # two commands more than a host whose `current` stayed: the read, and the restart again after the one that
    # stopped nothing
    sent = {h: len(world.fleet.transports[h].commands) - n for h, n in sent.items()}
    assert sent["h3"] == sent["h2"] + 2


def test_a_start_that_fails_inside_the_command_reverts_the_host(world: World) -> None:
    at_once(world, start_command="grep -q . {current}/VERSION || (echo 'this build has no version' >&2; exit 7) "
                                 "&& cat {current}/VERSION > {deploy_dir}/running")
    world.release("1.0.0")
    rec = world.release("3.0.0")  # its VERSION is empty: the start command fails
    assert rec.state == ReleaseState.PAUSED
    canary = world.store.host_run(rec.id, "h1")
    assert canary.state == HostState.FAILED
    assert "start: " in (canary.error or "") and "exit 7" in (canary.error or "")
    assert "this build has no version" in (canary.error or "")
    assert_clean(world, "1.0.0")  # back on 1.0.0, in the LB, unmuted
    seen = events(world, rec.id, "h1")
    assert seen[seen.index(("stop", "begin")):seen.index(("start", "failed")) + 1] == [
        ("stop", "begin"), ("stop", "done"), ("switch", "done"), ("start", "failed")]
    plan = [e.detail["steps"] for e in world.store.journal_entries(rec.id, "h1") if e.step == "revert"]
    assert plan == [[s.value for s in UNDO_ORDER]]


def test_a_health_check_that_fails_inside_the_command_reverts_the_host(world: World) -> None:
    at_once(world)
    world.release("1.0.0")
    rec = world.release("3.0.0")  # starts, but its health check fails
    assert rec.state == ReleaseState.PAUSED
    canary = world.store.host_run(rec.id, "h1")
    assert canary.state == HostState.FAILED and "not healthy after 2 checks" in (canary.error or "")
    assert_clean(world, "1.0.0")
    done = [e.step for e in world.store.journal_entries(rec.id, "h1") if e.event == "done"]
    assert done[done.index("stop"):done.index("stop") + 3] == ["stop", "switch", "start"]
    assert ("health", "failed") in events(world, rec.id, "h1")


def test_a_start_that_hangs_is_stopped_at_its_timeout_and_the_host_reverted(world: World) -> None:
    at_once(world, command_timeout=1, start_command="case {version} in 2.0.0) while :; do sleep 1; done;; esac; "
                                                    "cat {current}/VERSION > {deploy_dir}/running")
    assert world.release("1.0.0").state == ReleaseState.SUCCEEDED
    rec = world.release("2.0.0")  # 2.0.0's start never returns
    assert rec.state == ReleaseState.PAUSED
    canary = world.store.host_run(rec.id, "h1")
    assert canary.state == HostState.FAILED and "start: " in (canary.error or "")
    assert "timed out after 1s" in (canary.error or "")
    assert_clean(world, "1.0.0")  # the revert's own start (of 1.0.0) returns


def test_a_command_that_never_ran_counts_as_the_whole_restart_begun(world: World,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection breaks as the restart goes out: which part ran is unknown, so all four count as begun
    (their undo is the same) and the host is put back on its previous version."""
    at_once(world)
    world.release("1.0.0")
    real = parts_module.run_parts
    broken: list[str] = []

    async def cut_off(transport: Any, parts: Any, *, timeout: float) -> Any:
        if transport.host.name == "h1" and "stop" in [p.name for p in parts] and not broken:  # the restart
            broken.append("h1")
            raise HostUnreachable("h1", "connection lost (test)")
        return await real(transport, parts, timeout=timeout)

    monkeypatch.setattr(parts_module, "run_parts", cut_off)
    rec = world.release("2.0.0")
    assert rec.state == ReleaseState.PAUSED
    assert world.store.host_run(rec.id, "h1").state == HostState.FAILED
    assert ("stop", "failed") in events(world, rec.id, "h1")
    assert world.current("h1") == "1.0.0" and world.running("h1") == "1.0.0"
    assert world.switch.out == set() and world.silencer.muted == {}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_crash_after_the_command_before_its_steps_are_journaled_is_resumed(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 right after the host ran the whole restart, before any of its four steps is journaled done: the
    next controller runs them again (each is safe to repeat) and finishes cleanly."""
    at_once(world)
    world.release("1.0.0")
    rid = world.start("2.0.0")
    real = engine_module.restart
    crashed: list[str] = []

    async def crashing(ctx: Any) -> Any:
        done = await real(ctx)
        if ctx.host.name == "h1" and not crashed:
            crashed.append("h1")
            raise Crash
        return done

    monkeypatch.setattr(engine_module, "restart", crashing)
    with pytest.raises(Crash):
        world.drive(rid)
    gc.collect()
    assert world.store.host_run(rid, "h1").step == "stop"  # caught mid-restart: all four begun, none done
    rec = world.drive(rid)  # a new controller
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert_clean(world, "2.0.0")
    stops = [ev for step, ev in events(world, rid, "h1") if step == "stop"]
    assert stops == ["begin", "begin", "done"]


def test_a_rollback_restarts_each_host_in_one_command_too(world: World) -> None:
    at_once(world)
    world.release("1.0.0")
    world.release("2.0.0")
    rid = world.start("1.0.0", kind="rollback", previous="2.0.0")
    rec = world.drive(rid)
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert_clean(world, "1.0.0")
    begins = [e.detail for e in world.store.journal_entries(rid, "h2") if e.step == "stop" and e.event == "begin"]
    assert begins and begins[0]["with"] == ["switch", "start", "health"]


def test_an_app_without_health_probes_restarts_step_by_step(world: World) -> None:
    """No probe to wait on: the steps go one at a time (the health step says none is configured)."""
    world.fleet.runtime = replace(world.fleet.runtime, probes=[], probes_for=lambda values: [],
                                  fuse_host_commands=True)
    rec = world.release("1.0.0")
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert_clean(world, "1.0.0")
    begins = [e.detail for e in world.store.journal_entries(rec.id, "h2") if e.step == "stop" and e.event == "begin"]
    assert "with" not in begins[0]
    assert ("switch", "begin") in events(world, rec.id, "h2")
