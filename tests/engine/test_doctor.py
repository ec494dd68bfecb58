"""`graylift doctor` over the fakes: a controller killed mid-host leaves it drained, muted and stopped; doctor finds
it from the journal and the live survey, --repair puts it back through the engine's own undo, a second run finds
nothing, and the release still finishes. Over the same folder hosts and fakes as the engine's tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import graylift.engine.hosts as engine_module
from graylift import cli
from graylift.cli import doctor as cli_doctor
from graylift.core.doctor import Repair
from graylift.core.flow import Step
from graylift.core.state import HostState, ReleaseState
from graylift.service import Finding, Graylift
from tests.engine.conftest import APP, ENV, World
from tests.engine.test_engine_with_fakes import Crash, until_crash
from tests.engine.test_service_safety import drive, make_service


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world(8)


@pytest.fixture
def gl(world: World, tmp_path: Path) -> Graylift:
    return make_service(world, tmp_path)


def doctor(gl: Graylift, *, repair: bool = False) -> dict[str, Finding]:
    return {f.host: f for f in asyncio.run(gl.doctor(APP, ENV, repair=repair))}


def release(gl: Graylift, version: str) -> int:
    rec = asyncio.run(gl.start_release(APP, ENV, version, started_by="test"))
    return rec.id


def killed_after(gl: Graylift, monkeypatch: pytest.MonkeyPatch, rid: int, host: str, step: Step, nth: int = 1
                 ) -> None:
    """Drive ``rid`` until ``host`` has done ``step``'s side effect (the ``nth`` time), then die before it is
    journaled done."""
    real_run_step = engine_module.run_step
    seen: list[Step] = []

    async def crashing(s: Step, ctx: Any) -> dict[str, Any]:
        detail = await real_run_step(s, ctx)
        if s is step and ctx.host.name == host:
            seen.append(s)
            if len(seen) == nth:
                raise Crash
        return detail

    monkeypatch.setattr(engine_module, "run_step", crashing)
    until_crash(lambda: drive(gl, rid))
    monkeypatch.setattr(engine_module, "run_step", real_run_step)


# the simulated kill leaves asyncio subprocess transports to be collected after their loop closed
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_host_left_drained_muted_and_stopped_is_found_repaired_and_the_release_finishes(
        world: World, gl: Graylift, monkeypatch: pytest.MonkeyPatch) -> None:
    drive(gl, release(gl, "1.0.0"))
    assert doctor(gl) == {}
    rid = release(gl, "2.0.0")
    killed_after(gl, monkeypatch, rid, "h1", Step.STOP)  # h1: the canary
    assert world.switch.out == {"h1"} and "h1" in world.silencer.muted and world.running("h1") == ""

    found = doctor(gl)
    assert list(found) == ["h1"]
    d = found["h1"].diagnosis
    assert d.problems[0] == f"release #{rid} stopped at stop"
    assert "out of traffic in lb1" in d.problems and "muted in fake-alerts (silence silence-…)" in d.problems
    assert any(p.startswith("not serving") for p in d.problems)
    assert any(e.startswith(f"journal: release #{rid} began") for e in d.evidence)
    assert d.repair is Repair.REVERT and d.steps[-2:] == (Step.PUT_BACK, Step.UNMUTE)
    assert world.switch.out == {"h1"}  # finding is read-only

    repaired = doctor(gl, repair=True)["h1"]
    assert repaired.repaired, repaired.outcome
    assert world.switch.out == set() and world.silencer.muted == {}
    assert world.current("h1") == "1.0.0" and world.running("h1") == "1.0.0"
    assert gl.store.host_run(rid, "h1").state is HostState.PENDING  # the release does it again
    assert doctor(gl) == {}

    assert drive(gl, rid).state is ReleaseState.SUCCEEDED
    assert {world.current(h.name) for h in world.hosts} == {"2.0.0"}
    assert {world.running(h.name) for h in world.hosts} == {"2.0.0"}
    assert doctor(gl) == {}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_host_caught_mid_revert_has_its_revert_finished(world: World, gl: Graylift,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    drive(gl, release(gl, "1.0.0"))
    rid = release(gl, "3.0.0")  # unhealthy: the canary h1 is reverted; killed as the revert restarts 1.0.0
    killed_after(gl, monkeypatch, rid, "h1", Step.START, nth=2)
    assert gl.store.host_run(rid, "h1").state is HostState.REVERTING
    d = doctor(gl)["h1"].diagnosis
    assert d.repair is Repair.REVERT and d.steps == () and "revert" in d.advice
    assert "out of traffic in lb1" in d.problems and any(p.startswith("muted") for p in d.problems)
    assert doctor(gl, repair=True)["h1"].repaired
    assert gl.store.host_run(rid, "h1").state is HostState.FAILED  # its own failure stands: not queued again
    assert world.switch.out == set() and world.silencer.muted == {} and world.running("h1") == "1.0.0"
    assert doctor(gl) == {}
    assert drive(gl, rid).state in (ReleaseState.PAUSED, ReleaseState.ROLLED_BACK)
    assert {world.current(h.name) for h in world.hosts} == {"1.0.0"} and doctor(gl) == {}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_host_a_live_release_drives_is_not_touched(world: World, gl: Graylift,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    drive(gl, release(gl, "1.0.0"))
    rid = release(gl, "2.0.0")
    killed_after(gl, monkeypatch, rid, "h1", Step.TAKE_OUT)
    assert gl.store.claim(rid, "elsewhere:1:ab", 10.0) is not None  # another controller, heartbeat fresh
    world.switch.out.add("h6")  # a host the live release has not reached yet: not touched either
    found = doctor(gl, repair=True)
    assert set(found) == {"h1", "h6"}
    for finding in found.values():
        assert not finding.repaired and finding.diagnosis.repair is Repair.REFUSED
        assert f"release #{rid} (elsewhere:1:ab) is live" in finding.outcome
    assert world.switch.out == {"h1", "h6"} and gl.store.host_run(rid, "h1").state is HostState.RUNNING


def test_a_settled_host_left_out_muted_and_stopped_is_walked_back(world: World, gl: Graylift) -> None:
    rid = release(gl, "1.0.0")
    drive(gl, rid)
    world.switch.out.add("h4")
    world.silencer.muted["h4"] = datetime.now(UTC) + timedelta(minutes=5)
    (world.folders / "h4" / "running").unlink()
    gl.store.mark_needs_attention(APP, ENV, "h4", reason="put_back failed", backends={"lb1": "down"},
                                  release_id=rid)
    d = doctor(gl)["h4"].diagnosis
    assert d.repair is Repair.STEPS
    assert d.steps == (Step.TAKE_OUT, Step.QUIET, Step.STOP, Step.START, Step.HEALTH, Step.PUT_BACK, Step.UNMUTE)
    assert "cmdb: needs attention: put_back failed" in d.evidence
    assert doctor(gl, repair=True)["h4"].repaired
    assert world.switch.out == set() and world.silencer.muted == {} and world.running("h4") == "1.0.0"
    assert gl.store.host_health(APP, ENV) == {}
    assert doctor(gl) == {}


def test_a_host_on_another_version_than_its_record_is_reported(world: World, gl: Graylift) -> None:
    rid = release(gl, "1.0.0")
    drive(gl, rid)
    world.install_by_script("h5", "2.0.0")  # someone else's tool
    finding = doctor(gl, repair=True)["h5"]
    assert finding.diagnosis.problems == (f"on 2.0.0, its record says 1.0.0 (release #{rid})",)
    assert not finding.repaired and f"graylift release {APP} 1.0.0 --env {ENV}" in finding.outcome
    assert world.running("h5") == "2.0.0"  # not touched


def test_the_command_says_it_in_text_and_json_with_its_exit_codes(world: World, gl: Graylift,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_doctor, "local_service", lambda config, refuse_remote=None: gl)

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli.app, ["doctor", *args], env={"COLUMNS": "200"})

    drive(gl, release(gl, "1.0.0"))
    clean = run(APP, "--env", ENV)
    assert clean.exit_code == 0 and "every host is as its record says" in clean.output
    world.switch.out.add("h4")
    listed = run(APP, "--env", ENV, "--output", "json")
    assert listed.exit_code == 1
    [finding] = json.loads(listed.output)
    assert (finding["host"], finding["problems"], finding["repair"], finding["steps"]) == \
        ("h4", ["out of traffic in lb1"], "steps", ["put_back"])
    text = run(APP, "--env", ENV)
    assert text.exit_code == 1
    assert f"h4 ({APP}, {ENV}): out of traffic in lb1" in text.output and "--repair will: put_back" in text.output
    fixed = run("--repair")  # every app and environment with releases
    assert fixed.exit_code == 0 and "repaired: ran put_back" in fixed.output and world.switch.out == set()
    for bad, says in ((("--output", "xml"), "'xml' is not one of 'text', 'json'"),
                      (("nosuch", "--env", ENV), "unknown app 'nosuch'"), (("nosuch",), "give --env ENV")):
        done = run(*bad)
        assert done.exit_code == 2 and says in done.output and "Traceback" not in done.output
