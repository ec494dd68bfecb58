"""The take-out step (graylift.steps.take_out): every switch out and read back, then ONE propagation wait on
the step's clock, the largest of the switches', each one recorded by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from graylift import steps
from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.core.model import Host, Package, Strategy
from graylift.errors import BackendsFailed
from graylift.runtime import AppRuntime, StepContext, Target
from graylift.testing import FakeClock, FakeSwitch, FolderTransport

HOST = Host("web-1", "10.0.0.1")


async def no_package() -> Package:
    raise AssertionError("take-out never needs the package")


def context(switches: list[FakeSwitch], clock: FakeClock, tmp_path: Path) -> StepContext:
    runtime = AppRuntime(app="shop", env="prod", deploy_dir="/srv/shop", keep_releases=3, start_command="true",
                         stop_command="true", command_timeout=5, drain_command=None, probes=[], health_retries=1,
                         health_interval=0, switches=switches, silencers=[], silence_seconds=60, quiet_period=0,
                         strategy=Strategy(), render=lambda template, values: template)
    runtime.deploy_dirs = lambda transport: ShellDeployDir(transport, "/srv/shop")
    return StepContext.open(runtime, HOST, FolderTransport(HOST, tmp_path, "/srv/shop"),
                            Target(version="2", dir="2", sha256=None, package=no_package), 1, clock)


async def test_one_wait_the_largest_on_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    switches = [FakeSwitch(name="haproxy:web"), FakeSwitch(name="zookeeper:/dubbo/s", propagation_seconds=2),
                FakeSwitch(name="eureka:S", propagation_seconds=30),
                FakeSwitch(name="etcd:/s", propagation_seconds=0.5)]
    detail = await steps.take_out(context(switches, clock, tmp_path))
    assert clock.monotonic() == 30  # once, the largest: not 2 + 30 + 0.5
    assert detail == {"out_of": ["haproxy:web", "zookeeper:/dubbo/s", "eureka:S", "etcd:/s"],
                      "propagation_seconds": {"zookeeper:/dubbo/s": 2, "eureka:S": 30, "etcd:/s": 0.5}}
    assert all(s.out == {"web-1"} for s in switches)


async def test_load_balancers_alone_do_not_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    detail = await steps.take_out(context([FakeSwitch(name="a"), FakeSwitch(name="b")], clock, tmp_path))
    assert clock.monotonic() == 0 and detail["propagation_seconds"] == {}


async def test_a_failed_switch_fails_the_step_before_any_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    switches = [FakeSwitch(name="zk", propagation_seconds=2), FakeSwitch(name="lb", fails={("take_out", "*")})]
    with pytest.raises(BackendsFailed) as caught:
        await steps.take_out(context(switches, clock, tmp_path))
    assert clock.monotonic() == 0 and "lb" in str(caught.value)
