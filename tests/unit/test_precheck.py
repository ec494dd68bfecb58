"""The pre-check's two reads of a host (graylift.steps.precheck): what it runs and whether it is healthy.

Probes that read the same whatever version runs go at once with the survey: as ONE command on a shell host
(the wiring's ``fuse_host_commands``), else as two over the host's connection; a probe naming ``{version}``
or ``{release_dir}`` waits for the survey to say which. A fresh host has no health to read."""

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
from graylift.errors import GrayliftError
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


def context(transport: SlowHost, probe: str, *, fused: bool = False) -> StepContext:
    health = HealthConfig(command=probe)
    runtime = AppRuntime(app="shop", env="prod", deploy_dir=DEPLOY, keep_releases=3, start_command="true",
                         stop_command="true", command_timeout=5, drain_command=None, probes=[], health_retries=1,
                         health_interval=0, switches=[], silencers=[], silence_seconds=60, quiet_period=0,
                         strategy=Strategy(), render=render_command,
                         probes_for=partial(probes_from_config, health), fuse_host_commands=fused)
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


async def test_on_a_shell_host_the_survey_and_the_probes_are_one_command(tmp_path: Path) -> None:
    transport = SlowHost(host_on(tmp_path, "1.0"))
    detail = await steps.precheck(context(transport, f"test -f {DEPLOY}/current/ok", fused=True))
    assert detail["current"] == "1.0" and detail["healthy"] is True
    assert detail["found"]["releases"] == {"1.0": None}
    assert [span[2] for span in transport.spans] == ["sh -s"]


async def test_in_one_command_an_unhealthy_host_and_a_fresh_one_read_as_apart(tmp_path: Path) -> None:
    probe = f"test -f {DEPLOY}/current/missing"
    with pytest.raises(HostUnhealthy, match="missing' exited 1"):
        await steps.precheck(context(SlowHost(host_on(tmp_path / "sick", "1.0")), probe, fused=True))
    rollback = replace(context(SlowHost(host_on(tmp_path / "read", "1.0")), probe, fused=True), require_healthy=False)
    assert (await steps.precheck(rollback))["healthy"] is False
    fresh = SlowHost(host_on(tmp_path / "fresh", None))
    detail = await steps.precheck(context(fresh, probe, fused=True))
    assert detail["note"] == "fresh host: nothing installed yet" and len(fresh.spans) == 1


async def test_in_one_command_a_layout_graylift_does_not_know_names_the_host(tmp_path: Path) -> None:
    root = host_on(tmp_path, None)
    (root / "current").mkdir()  # a directory where the link should be
    with pytest.raises(GrayliftError, match=r"web-1: .*current is a directory"):
        await steps.precheck(context(SlowHost(root), f"test -f {DEPLOY}/current/ok", fused=True))
