"""The quiet period (graylift.steps.quiet): wait until no switch sees a request in flight, at most the
configured period; a switch that cannot count requests leaves the whole period to wait."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from graylift import steps
from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.core.model import Host, Package, Strategy
from graylift.runtime import AppRuntime, StepContext, Target
from graylift.testing import FakeClock, FakeSwitch, FolderTransport

HOST = Host("web-1", "10.0.0.1")


@dataclass
class CountingSwitch(FakeSwitch):
    """A switch whose in-flight count for the host is the next of ``sessions`` (the last one repeats);
    ``None`` is a switch that cannot count. Every read is kept in ``reads``."""

    sessions: list[int | None] = field(default_factory=lambda: [0])
    reads: int = 0

    async def in_flight(self, host: Host) -> int | None:
        self.reads += 1
        return self.sessions[min(self.reads, len(self.sessions)) - 1]


async def no_package() -> Package:
    raise AssertionError("the quiet period never needs the package")


def context(switches: list[CountingSwitch], clock: FakeClock, tmp_path: Path, quiet_period: float = 5
            ) -> StepContext:
    runtime = AppRuntime(app="shop", env="prod", deploy_dir="/srv/shop", keep_releases=3, start_command="true",
                         stop_command="true", command_timeout=5, drain_command=None, probes=[], health_retries=1,
                         health_interval=0, switches=list(switches), silencers=[], silence_seconds=60,
                         quiet_period=quiet_period, strategy=Strategy(), render=lambda template, values: template)
    runtime.deploy_dirs = lambda transport: ShellDeployDir(transport, "/srv/shop")
    return StepContext.open(runtime, HOST, FolderTransport(HOST, tmp_path, "/srv/shop"),
                            Target(version="2", dir="2", sha256=None, package=no_package), 1, clock)


async def test_a_drained_host_is_read_once_per_switch(tmp_path: Path) -> None:
    """The read that says a switch can count requests is also the first observation: a host already drained
    costs one read of each switch and no wait."""
    clock = FakeClock()
    switches = [CountingSwitch(name="haproxy:web"), CountingSwitch(name="nginx:web")]
    detail = await steps.quiet(context(switches, clock, tmp_path))
    assert detail == {"waited_seconds": 0.0, "ended_by": "drained"}
    assert [s.reads for s in switches] == [1, 1]
    assert clock.monotonic() == 0


async def test_requests_in_flight_are_waited_for_and_read_again(tmp_path: Path) -> None:
    clock = FakeClock()
    busy = CountingSwitch(name="haproxy:web", sessions=[2, 1, 0])
    detail = await steps.quiet(context([busy, CountingSwitch(name="nginx:web")], clock, tmp_path))
    assert detail["ended_by"] == "drained" and busy.reads == 3
    assert clock.monotonic() == 0.4  # two sleeps of 0.2 s before the third read saw 0


async def test_a_host_never_drained_waits_the_whole_period(tmp_path: Path) -> None:
    clock = FakeClock()
    busy = CountingSwitch(name="haproxy:web", sessions=[3])
    detail = await steps.quiet(context([busy], clock, tmp_path, quiet_period=1))
    assert detail["ended_by"] == "quiet period" and detail["waited_seconds"] >= 1


async def test_switches_that_cannot_count_leave_the_whole_period(tmp_path: Path) -> None:
    clock = FakeClock()
    registry = CountingSwitch(name="zookeeper:/dubbo/s", sessions=[None])
    ctx = context([registry], clock, tmp_path, quiet_period=2)
    detail = await steps.quiet(ctx)
    assert detail == {"waited_seconds": 2.0, "ended_by": "quiet period"}
    assert registry.reads == 1  # nothing to observe: read once, to know that
    nothing = await steps.quiet(replace(ctx, runtime=replace(ctx.runtime, quiet_period=0)))
    assert nothing["ended_by"] == "quiet period" and nothing["waited_seconds"] == 0
