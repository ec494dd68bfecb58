"""One simulated run: the real service, engine, store (SQLite in memory), steps and plan over the simulated
fleet, on virtual time; then the invariants. A failing scenario is shrunk to the shortest one that still fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from graylift.config import GrayliftConfig, render_command
from graylift.core.model import Host
from graylift.core.state import ReleaseKind, ReleaseState
from graylift.engine import STALE_AFTER_SECONDS
from graylift.errors import GrayliftError
from graylift.runtime import AppRuntime
from graylift.service import Graylift
from graylift.sim.clock import Deadlock, SimClock, VirtualLoop
from graylift.sim.scenario import Action, Scenario
from graylift.sim.shell import SimShellProbe
from graylift.sim.world import (
    APP,
    Faults,
    SimDeployDir,
    SimHost,
    SimProbe,
    SimRepository,
    SimSilencer,
    SimSwitch,
    SimTransport,
    World,
)
from graylift.store import Store

ENV = "prod"
DEPLOY = "/srv/sim"
MAX_DRIVE_SECONDS = 600.0  # a controller still driving after this (virtual) time is parked
PARK_CHECK_SECONDS = 10.0  # how often a drive looks whether its release waits for a person (then it is parked)
T = TypeVar("T")


@dataclass
class Outcome:
    scenario: Scenario
    violations: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    ops: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


_TEMPLATE: sqlite3.Connection | None = None


def fresh_store(now: Callable[[], datetime]) -> Store:
    """An in-memory store with the migrated schema, copied from a template migrated once per process."""
    global _TEMPLATE
    if _TEMPLATE is None:
        migrated = Store.open("sqlite://")
        _TEMPLATE = sqlite3.connect(":memory:", check_same_thread=False)
        migrated._write_engine.raw_connection().driver_connection.backup(_TEMPLATE)  # type: ignore[union-attr]
        migrated.close()
    store = Store.open("sqlite://", now=now, migrate_schema=False)
    _TEMPLATE.backup(store._write_engine.raw_connection().driver_connection)  # type: ignore[arg-type]
    return store


class SimFleet:
    """The Fleet port over the simulated world."""

    def __init__(self, world: World, runtime: AppRuntime, repository: SimRepository) -> None:
        self.world, self.runtime, self.repository = world, runtime, repository

    async def connect(self, host: Host) -> SimTransport:
        self.world.enter(f"{host.name}: connect")
        await self.world.point(f"{host.name}: connect")
        return SimTransport(self.world, host)

    async def package(self, version: str) -> Any:
        return await self.repository.resolve(APP, version)

    async def close(self) -> None:
        return None


def sim_config(scenario: Scenario) -> GrayliftConfig:
    data = {
        "state": "sqlite://",
        "apps": {APP: {
            "package": {"type": "tar.gz", "local_dir": "/nonexistent/sim-packages"},
            "deploy": {"dir": DEPLOY, "keep_releases": scenario.keep_releases},
            "commands": {"start": "start", "stop": "stop", "timeout": 10},
            "health": {"command": "true", "retries": 3, "interval": 1},
            "quiet_period": 1,
            "strategy": scenario.strategy,
        }},
    }
    return GrayliftConfig.model_validate(data, context={"base_dir": Path("/"), "repositories": set()})


class Run:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.outcome = Outcome(scenario)
        hosts = {f"h{i}": SimHost(f"h{i}") for i in range(1, scenario.hosts + 1)}
        self.world = World(hosts, set(scenario.healthy))
        config = sim_config(scenario)
        strategy = config.app_for_env(APP, ENV).strategy_model()
        self.world.switches = [SimSwitch(world=self.world, name="lb", allow_half=strategy.allow_half_or_more),
                               SimSwitch(world=self.world, name="registry", allow_half=strategy.allow_half_or_more)]
        self.world.silencer = SimSilencer(world=self.world)
        self.repository = SimRepository(self.world)
        runtime = AppRuntime(
            app=APP, env=ENV, deploy_dir=DEPLOY, keep_releases=scenario.keep_releases, start_command="start",
            stop_command="stop", command_timeout=10, drain_command=None,
            probes=[SimShellProbe() if scenario.fused else SimProbe(self.world)], fuse_host_commands=scenario.fused,
            health_retries=3, health_interval=1, switches=self.world.switches, silencers=[self.world.silencer],
            silence_seconds=1800, quiet_period=1, strategy=strategy, render=render_command,
            deploy_dirs=lambda transport: SimDeployDir(self.world, transport))
        self.fleet = SimFleet(self.world, runtime, self.repository)
        self.clock = SimClock()
        self.store = fresh_store(self.clock.now)
        self.gl = Graylift(Path("/nonexistent/sim.yaml"), config=config, store=self.store, clock=self.clock,
                           fleet=lambda snap, app, env, hosts: self.fleet)
        if scenario.waits:
            self.gl.hand_reads_to_drives()
        self.gl.import_hosts(APP, ENV, [Host(n, f"10.0.0.{i}", group="beta" if i <= scenario.beta else "prod")
                                        for i, n in enumerate(hosts, start=1)])
        self.zombies: list[tuple[VirtualLoop, asyncio.Task[Any], asyncio.Future[None] | None]] = []
        self.epochs: dict[asyncio.Task[Any], tuple[int, int]] = {}  # a stopped controller's release and epoch
        self.requests: list[Action] = []
        self.kill: int | None = None
        self.externally_stopped: set[str] = set()
        self.checked: list[tuple[Any, list[Any]]] | None = None  # what the invariants read, once

    # --- running ---------------------------------------------------------------------------------

    def log(self, line: str) -> None:
        self.outcome.log.append(line)

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a service call (no controller: preflight, plan) to its end on virtual time."""
        loop = self.clock.new_loop()
        try:
            return loop.run_until_complete(make())
        finally:
            loop.close()

    def drive(self, release_id: int) -> None:
        loop = self.clock.new_loop()
        start = self.world.ops
        if self.kill is not None:
            self.world.kill_at = start + self.kill
            self.kill = None
        pending = list(self.requests)
        self.requests.clear()

        def on_point(ops: int) -> None:
            for action in list(pending):
                if ops - start >= action.at:
                    pending.remove(action)
                    kind = "rollback" if action.kind == "rollback_request" else action.kind
                    with contextlib.suppress(GrayliftError):
                        self.gl.request(release_id, kind)
                        self.log(f"    {kind} requested at point {ops - start}")

        self.world.on_point = on_point
        task = loop.create_task(self.gl.engine().drive(release_id))
        loop.call_at(loop.time() + MAX_DRIVE_SECONDS, loop.stop)

        def park_when_waiting_for_a_person() -> None:
            if self.store.get_release(release_id).state is ReleaseState.AWAITING_PROMOTION:
                loop.stop()  # its controller would wait for `graylift promote`: park it now
            else:
                loop.call_later(PARK_CHECK_SECONDS, park_when_waiting_for_a_person)

        loop.call_later(PARK_CHECK_SECONDS, park_when_waiting_for_a_person)
        try:
            rec = loop.run_until_complete(task)
            self.log(f"    -> #{rec.id} {rec.state}: {rec.message}")
            loop.close()
        except Deadlock as exc:
            self.outcome.violations.append(f"release #{release_id}: {exc}")
        except RuntimeError:  # the loop was stopped: the controller died (kill -9) or is parked waiting
            self.zombies.append((loop, task, self.world.frozen[-1] if self.world.frozen else None))
            self.world.frozen.clear()
            self.epochs[task] = (release_id, self.store.get_release(release_id).lease_epoch)
            rec = self.store.get_release(release_id)
            self.log(f"    -> controller stopped at point {self.world.ops - start} ({rec.state}); "
                     f"{STALE_AFTER_SECONDS:g}s later another may take over")
            self.clock.advance(STALE_AFTER_SECONDS + 1)
        except GrayliftError as exc:
            self.log(f"    -> {type(exc).__name__}: {exc}")
            loop.close()
        finally:
            self.world.kill_at = None
            self.world.on_point = None

    def thaw(self) -> None:
        """The oldest stopped controller runs again, long after its lease went stale (a VM resumed, a SIGCONT):
        if another took its release over it must stop at once, touching no host and writing nothing; if nobody
        did, it renews its lease and goes on."""
        for index, (loop, task, frozen) in enumerate(self.zombies):
            if frozen is None or task.done():
                continue
            del self.zombies[index]
            loop.set_time(self.clock.monotonic())
            self.clock.loop = loop
            release_id, epoch = self.epochs[task]
            taken_over = self.store.get_release(release_id).lease_epoch != epoch
            self.log(f"    (its release #{release_id} was {'taken over' if taken_over else 'left alone'} meanwhile)")
            self.world.thawed = taken_over  # with nobody else driving, it may go on (its heartbeat renews)
            frozen.set_result(None)
            loop.call_at(loop.time() + 60, loop.stop)
            try:
                loop.run_until_complete(task)
                self.log("    -> the thawed controller finished its drive")
            except RuntimeError:  # parked (waiting for a person, say): it stops here, as a parked drive does
                self.zombies.append((loop, task, None))
                self.log(f"    -> the thawed controller is still running after 60s; parked, {STALE_AFTER_SECONDS:g}s "
                         "later another may take over")
                self.clock.advance(STALE_AFTER_SECONDS + 1)
            except GrayliftError as exc:
                self.log(f"    -> the thawed controller stopped: {type(exc).__name__}: {exc}")
            finally:
                self.world.thawed = False
                self.clock.advance(0)
            return
        self.log("    nothing to thaw")

    def active(self) -> Any:
        return self.store.active_release(APP, ENV)

    def apply(self, action: Action) -> None:
        self.log(f"{action}")
        w, kind = self.world, action.kind
        try:
            if kind == "release":
                rec = self.call(lambda: self.gl.start_release(APP, ENV, action.version, started_by="sim"))
                self.note_bad(allowed=action.version)
                self.drive(rec.id)
            elif kind == "rollback":
                rec = self.call(lambda: self.gl.start_rollback(APP, ENV, to_version=None, started_by="sim"))
                if rec.kind is ReleaseKind.ROLLBACK:
                    self.note_bad()
                self.drive(rec.id)
            elif kind in ("resume", "retry"):
                active = self.active()
                if active is None:
                    self.log("    nothing to " + kind)
                    return
                rec = self.gl.resume(active.id) if kind == "resume" else self.gl.retry(active.id)
                self.drive(rec.id)
            elif kind in ("pause", "abort", "promote", "rollback_request"):
                self.requests.append(action)
            elif kind in ("kill", "freeze"):
                self.kill = action.at
            elif kind == "thaw":
                self.thaw()
            elif kind == "fault":
                w.faults.fail[(action.op, action.host)] = action.count
            elif kind == "hang":
                w.faults.hang.add((action.op, action.host))
            elif kind == "heal":
                w.faults = Faults()
            elif kind == "sick":
                if self.active() is not None:
                    self.log("    skipped: hosts only fall sick between releases (so a preflight sees them)")
                    return
                w.hosts[action.host].running = None
                self.externally_stopped.add(action.host)
            elif kind in ("unreachable", "reachable"):
                w.hosts[action.host].reachable = kind == "reachable"
            elif kind in ("repo_down", "repo_up"):
                self.repository.down = kind == "repo_down"
        except GrayliftError as exc:
            self.log(f"    refused: {type(exc).__name__}: {exc}")

    def note_bad(self, allowed: str | None = None) -> None:
        """A new release began: during it, a switch to a version rolled back before is a violation, unless it is
        a host's way back to what it served when the release began (an undo), or the version a person released."""
        self.world.forbidden = set(self.store.bad_versions(APP, ENV)) - {allowed}
        self.world.served_at_start = {n: (h.releases[h.current][1] if h.current else None)
                                      for n, h in self.world.hosts.items()}

    def settle(self) -> None:
        """What an operator's last `graylift resume` does: a release nobody drives is taken over and driven to a
        stop; a manual canary is promoted."""
        for _ in range(4):
            rec = self.active()
            if rec is None or rec.state is ReleaseState.PAUSED:
                return
            self.log(f"settle: #{rec.id} is {rec.state}")
            if rec.state is ReleaseState.AWAITING_PROMOTION:
                with contextlib.suppress(GrayliftError):
                    self.gl.request(rec.id, "promote")
            self.drive(rec.id)

    def execute(self) -> Outcome:
        try:
            for action in self.scenario.actions:
                self.apply(action)
            self.settle()
            self.outcome.violations += self.world.violations
            self.outcome.violations += check_invariants(self)
        finally:
            self.outcome.ops = self.world.ops
            self.close()
        return self.outcome

    def close(self) -> None:
        """Drop the dead controllers: their coroutines are finalized against a closed store, quietly."""
        self.store.close()
        hook = sys.unraisablehook
        sys.unraisablehook = lambda _: None
        try:
            for loop in self.clock.loops:
                for task in asyncio.all_tasks(loop):
                    task._log_destroy_pending = False  # type: ignore[attr-defined]  # a dead controller's, on purpose
                    with contextlib.suppress(BaseException):
                        task.get_coro().close()
                if not loop.is_closed():
                    with contextlib.suppress(BaseException):
                        loop.close()
            self.zombies.clear()
            self.clock.loops.clear()
        finally:
            sys.unraisablehook = hook


def check_invariants(run: Run) -> list[str]:
    from graylift.sim.invariants import all_invariants

    return all_invariants(run)


def run_scenario(scenario: Scenario) -> Outcome:
    return Run(scenario).execute()


def shrink(scenario: Scenario, *, budget: int = 200) -> Scenario:
    """The shortest scenario found (removing one action at a time) that still violates an invariant."""
    current, tries = scenario, 0
    changed = True
    while changed and tries < budget:
        changed = False
        for index in range(len(current.actions) - 1, 0, -1):  # the first action (the install) stays
            candidate = current.without(index)
            tries += 1
            if not run_scenario(candidate).ok:
                current, changed = candidate, True
                break
    return current


def run_seeds(seeds: Sequence[int], on_result: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    from graylift.sim.scenario import generate

    failed = []
    for seed in seeds:
        outcome = run_scenario(generate(seed))
        if on_result is not None:
            on_result(outcome)
        if not outcome.ok:
            failed.append(outcome)
    return failed
