"""The engine against fakes: fast, exact tests of its state machine, its undo and its crash recovery.

The hosts are folders on this machine (a LocalTransport whose commands see the app's deploy dir mapped to
the host's own folder); the load balancer and the silencer are in-memory fakes that record what was asked.
Everything else, the store (SQLite), the steps, the plan, the policies, is the real code.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import graylift.engine.hosts as engine_module
from graylift.adapters.health import CommandProbe
from graylift.config import render_command
from graylift.core.flow import RELEASE_FLOW, Step
from graylift.core.model import Host, OnFailure, Strategy
from graylift.core.plan import make_plan
from graylift.core.state import HostState, ReleaseState
from graylift.engine import Engine
from graylift.steps import AppRuntime
from graylift.store import ReleaseRecord, Store
from graylift.testing import FakeFleet, FakeRepository, FakeSilencer, FakeSwitch

APP, ENV, DEPLOY = "demo", "prod", "/srv/demo"
HOSTS = [Host(f"h{i}", f"10.0.0.{i}", group="beta" if i == 1 else "prod") for i in range(1, 7)]


class Crash(BaseException):
    """Stands for kill -9: nothing in the engine catches it."""


def package_bytes(version: str, healthy: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = (version if healthy else "").encode()
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class World:
    store: Store
    fleet: FakeFleet
    switch: FakeSwitch
    silencer: FakeSilencer
    folders: Path

    def engine(self) -> Engine:
        async def factory(rec: ReleaseRecord) -> FakeFleet:
            return self.fleet

        return Engine(self.store, factory)  # type: ignore[arg-type]

    def start(self, version: str, strategy: Strategy | None = None) -> int:
        strategy = strategy or self.fleet.runtime.strategy
        plan = make_plan(HOSTS, strategy)
        runs: list[tuple[Host, int, str | None]] = [(h, plan.batch_of(h.name), None) for h in HOSTS]
        rec = self.store.create_release(app=APP, env=ENV, kind="release", version=version,
                                        previous_version=self.store.current_version(APP, ENV),
                                        plan=plan.to_dict(), config={}, started_by="test", host_runs=runs)
        return rec.id

    def drive(self, release_id: int) -> ReleaseRecord:
        return asyncio.run(self.engine().drive(release_id))

    def release(self, version: str) -> ReleaseRecord:
        return self.drive(self.start(version))

    def current(self, host: str) -> str:
        return (self.folders / host / "current").readlink().name

    def running(self, host: str) -> str:
        path = self.folders / host / "running"
        return path.read_text().strip() if path.exists() else ""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    for version, healthy in (("1.0.0", True), ("2.0.0", True), ("3.0.0", False), ("4.0.0", True)):
        (artifacts / f"{APP}-{version}.tar.gz").write_bytes(package_bytes(version, healthy))
    switch, silencer = FakeSwitch(), FakeSilencer()
    runtime = AppRuntime(
        app=APP, env=ENV, deploy_dir=DEPLOY, keep_releases=3,
        start_command="cat {current}/VERSION > {deploy_dir}/running", stop_command="rm -f {deploy_dir}/running",
        command_timeout=10, drain_command=None,
        probes=[CommandProbe(f"test -s {DEPLOY}/running")], health_retries=2, health_interval=0.01,
        switches=[switch], silencers=[silencer], silence_seconds=600, quiet_period=0.0,
        strategy=Strategy(canary_group="beta", batch_size=2), render=render_command,
    )
    folders = tmp_path / "hosts"
    folders.mkdir()
    fleet = FakeFleet(runtime, folders, FakeRepository(artifacts))
    store = Store.open(f"sqlite:///{tmp_path}/state.db")
    w = World(store, fleet, switch, silencer, folders)
    yield w
    store.close()


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
    with pytest.raises(Crash):
        world.drive(rid)
    assert world.store.host_run(rid, "h1").state == HostState.RUNNING  # caught mid-flow
    rec = world.drive(rid)  # a new controller
    assert rec.state == ReleaseState.SUCCEEDED, rec.message
    assert_clean(world, "2.0.0")
    begun = [e for e in world.store.journal_entries(rid, "h1") if e.step == crash_after.value]
    assert [e.event for e in begun] == ["begin", "begin", "done"]  # re-run once, done once


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
    world.store.update_release(rid, state=ReleaseState.RUNNING.value)  # what `graylift resume` does
    monkeypatch.setattr(engine_module, "run_step", real_run_step)
    assert world.drive(rid).state == ReleaseState.SUCCEEDED
    assert_clean(world, "2.0.0")
