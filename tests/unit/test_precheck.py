"""The pre-check's two reads of a host (graylift.steps.precheck): what it runs and whether it is healthy.

Probes that read the same whatever version runs go at once with the survey, over the host's connection; a
probe naming ``{version}`` or ``{release_dir}`` waits for the survey to say which. A fresh host has no
health to read."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from graylift import steps
from graylift.adapters.health import HealthConfig, probes_from_config
from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.config import render_command
from graylift.core.model import Host, Package, Strategy
from graylift.ports import CommandResult
from graylift.runtime import AppRuntime, StepContext, Target
from graylift.steps import HostUnhealthy
from graylift.testing import FakeClock, FolderTransport

HOST = Host("web-1", "10.0.0.1")
DEPLOY = "/srv/shop"
SLOW = 0.4  # seconds each command takes on this host


class SlowHost(FolderTransport):
    """Every command takes SLOW seconds; when each ran is kept (start, end, command)."""

    def __init__(self, root: Path) -> None:
        super().__init__(HOST, root, DEPLOY)
        self.spans: list[tuple[float, float, str]] = []

    async def run(self, command: str, *, timeout: float, check: bool = True,
                  stdin: str | None = None) -> CommandResult:
        started = time.monotonic()
        await asyncio.sleep(SLOW)
        result = await super().run(command, timeout=timeout, check=check, stdin=stdin)
        self.spans.append((started, time.monotonic(), command))
        return result


async def no_package() -> Package:
    raise AssertionError("a pre-check never needs the package")


def host_on(tmp_path: Path, version: str | None) -> Path:
    root = tmp_path / "host"
    (root / "releases").mkdir(parents=True)
    if version is not None:
        (root / "releases" / version).mkdir()
        (root / "releases" / version / "ok").write_text("yes")
        (root / "current").symlink_to(f"releases/{version}")
    return root


def context(transport: SlowHost, probe: str) -> StepContext:
    health = HealthConfig(command=probe)
    runtime = AppRuntime(app="shop", env="prod", deploy_dir=DEPLOY, keep_releases=3, start_command="true",
                         stop_command="true", command_timeout=5, drain_command=None, probes=[], health_retries=1,
                         health_interval=0, switches=[], silencers=[], silence_seconds=60, quiet_period=0,
                         strategy=Strategy(), render=render_command,
                         probes_for=partial(probes_from_config, health))
    runtime.deploy_dirs = lambda t: ShellDeployDir(t, DEPLOY)
    return StepContext.open(runtime, HOST, transport, Target("2.0", "2.0", None, no_package), 1, FakeClock())


def overlap(transport: SlowHost) -> bool:
    first, second = sorted(transport.spans)
    return second[0] < first[1]  # the second began before the first ended


async def test_probes_that_do_not_name_the_version_run_beside_the_survey(tmp_path: Path) -> None:
    transport = SlowHost(host_on(tmp_path, "1.0"))
    detail = await steps.precheck(context(transport, f"test -f {DEPLOY}/current/ok"))
    assert detail["current"] == "1.0" and detail["healthy"] is True
    assert len(transport.spans) == 2 and overlap(transport), transport.spans


async def test_a_probe_naming_the_version_checks_the_one_the_survey_found(tmp_path: Path) -> None:
    transport = SlowHost(host_on(tmp_path, "1.0"))
    detail = await steps.precheck(context(transport, "test -f {release_dir}/ok"))
    assert detail["healthy"] is True  # releases/1.0/ok: the version running, not the target 2.0
    assert len(transport.spans) == 2 and not overlap(transport), transport.spans
    assert f"{DEPLOY}/releases/1.0/ok" in transport.spans[1][2]


async def test_an_unhealthy_host_is_seen_either_way(tmp_path: Path) -> None:
    for n, probe in enumerate((f"test -f {DEPLOY}/current/missing", "test -f {release_dir}/missing")):
        transport = SlowHost(host_on(tmp_path / str(n), "1.0"))
        with pytest.raises(HostUnhealthy, match="missing' exited 1"):
            await steps.precheck(context(transport, probe))
        ctx = replace(context(SlowHost(host_on(tmp_path / f"{n}b", "1.0")), probe), require_healthy=False)
        assert (await steps.precheck(ctx))["healthy"] is False  # a rollback's pre-check only reads


async def test_a_fresh_host_has_no_health_to_read(tmp_path: Path) -> None:
    transport = SlowHost(host_on(tmp_path, None))
    detail = await steps.precheck(context(transport, f"test -f {DEPLOY}/current/ok"))
    assert detail["note"] == "fresh host: nothing installed yet" and "healthy" not in detail
