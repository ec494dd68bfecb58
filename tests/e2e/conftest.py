"""A real lab fleet for end-to-end releases: sshd hosts in network namespaces, HAProxy, ZooKeeper,
Alertmanager and the artifact server, all real. Each test gets its own state database and config copy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import graylift.engine.hosts as hosts_module
from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.flow import Step
from graylift.core.state import ReleaseState
from graylift.lab import LabInfo, lab_down, lab_up
from graylift.lab.files import ZOOKEEPER_SERVICES
from graylift.lab.inspect import active_silences, haproxy_servers, host_versions, zookeeper_overrides
from graylift.service import Graylift
from graylift.steps import RESTART
from graylift.store import ReleaseRecord

IS_ROOT = os.geteuid() == 0
GRAYLIFT = [sys.executable, "-m", "graylift"]

pytestmark = [pytest.mark.root, pytest.mark.lab]


@pytest.fixture(autouse=True)
def _workers_end_with_their_test(tmp_path: Path) -> Iterator[None]:
    """A detached worker of a failed test must not go on driving (or waiting) after it."""
    yield
    from tests.conftest import kill_leftover_graylifts

    kill_leftover_graylifts(str(tmp_path))


def lab_fixture(app: str, hosts: int, name: str, **lab_args: Any) -> Callable[..., Iterator[LabInfo]]:
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
        if not IS_ROOT:
            pytest.skip("the lab needs root (network namespaces, sshd); run the tests as root")
        root = tmp_path_factory.mktemp(f"lab-{name}")
        lab_down(name, state_root=root)
        info = lab_up(name, hosts=hosts, apps=(app,), state_root=root, **lab_args)
        yield info
        lab_down(name, state_root=root)

    return fixture


@dataclass
class Deploy:
    """One config copy + one state database over a lab."""

    info: LabInfo
    app: str
    config: Path
    gl: Graylift
    env: str = "prod"

    def cli(self, *args: str, timeout: float = 300, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*GRAYLIFT, "-c", str(self.config), *args], capture_output=True, text=True,
                              timeout=timeout, env=os.environ | {"COLUMNS": "200"} | (env or {}))
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def release(self, version: str) -> ReleaseRecord:
        rec = asyncio.run(self.gl.start_release(self.app, self.env, version, started_by="test"))
        return asyncio.run(self.gl.engine().drive(rec.id))

    def rollback(self) -> ReleaseRecord:
        rec = asyncio.run(self.gl.start_rollback(self.app, self.env, to_version=None, started_by="test"))
        return asyncio.run(self.gl.engine().drive(rec.id))

    def versions(self) -> dict[str, str | None]:
        return host_versions(self.info, self.app)

    def assert_fleet_clean(self) -> None:
        """No host left out of HAProxy, muted, or disabled in ZooKeeper."""
        servers = haproxy_servers(self.info, self.app)
        deadline = time.monotonic() + 10
        while not all(s.serving for s in servers.values()) and time.monotonic() < deadline:
            time.sleep(0.2)  # HAProxy's own health check needs a moment to see a restarted app
            servers = haproxy_servers(self.info, self.app)
        assert all(s.serving for s in servers.values()), servers
        assert active_silences(self.info) == []
        assert zookeeper_overrides(self.info, ZOOKEEPER_SERVICES[self.app]) == []


def make_deploy(info: LabInfo, app: str, tmp_path: Path, **strategy: Any) -> Deploy:
    """A config copy with its own state db and the given strategy/app overrides."""
    data = yaml.safe_load(Path(info.config_path).read_text())
    data["state"] = f"sqlite:///{tmp_path}/state.db"
    app_cfg = data["apps"][app]
    for key, value in strategy.items():
        if key in ("commands", "health"):
            app_cfg[key].update(value)
        elif key == "quiet_period":
            app_cfg[key] = value
        else:
            app_cfg["strategy"][key] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "graylift.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    gl = Graylift(config)
    gl.store.replace_hosts(app, "prod", load_hosts_file(Path(info.hosts_file)))
    return Deploy(info, app, config, gl)


def settled(rec: ReleaseRecord, *states: ReleaseState) -> None:
    assert rec.state in states, f"release #{rec.id} is {rec.state}: {rec.message}"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def hook_steps(monkeypatch: pytest.MonkeyPatch, before: Callable[[Step, Any], None]) -> None:
    """Call ``before(step, ctx)`` just before the engine runs each step of each host (a fault goes in here).
    Stop, switch, start and health are one host command (``graylift.steps.restart``): each of their hooks is
    called before that command, in their order."""
    real = hosts_module.run_step  # type: ignore[attr-defined]  # the name the engine calls, patched below
    real_restart = hosts_module.restart  # type: ignore[attr-defined]

    async def run_step(step: Step, ctx: Any) -> dict[str, Any]:
        before(step, ctx)
        return await real(step, ctx)

    async def restart(ctx: Any) -> Any:
        for step in RESTART:
            before(step, ctx)
        return await real_restart(ctx)

    monkeypatch.setattr(hosts_module, "run_step", run_step)
    monkeypatch.setattr(hosts_module, "restart", restart)
