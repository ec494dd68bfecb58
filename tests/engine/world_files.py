"""A fleet whose every piece of state is files (folder hosts, file LB, file silences), so several controller
processes share it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from graylift.adapters.health import CommandProbe
from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.config import render_command
from graylift.core.model import Host, Strategy
from graylift.ports import CommandResult
from graylift.runtime import AppRuntime
from graylift.testing import FakeFleet, FakeRepository, FileSilencer, FileSwitch, FolderTransport
from tests.engine.conftest import APP, DEPLOY, ENV, VERSIONS, package_bytes


def prepare(world: Path) -> None:
    artifacts = world / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    for version, healthy in VERSIONS.items():
        (artifacts / f"{APP}-{version}.tar.gz").write_bytes(package_bytes(version, healthy))


class StallingTransport(FolderTransport):
    """A host whose first restart command (the one whose script stops the app) gets half its script, then
    nothing more until ``<world>/thawed`` exists: the connection of a controller frozen while it was still
    sending. The host leaves ``<world>/stalled-<host>`` once it has the half."""

    stalled = False  # once per controller process

    def __init__(self, host: Host, root: Path, deploy_dir: str, world: Path) -> None:
        super().__init__(host, root, deploy_dir)
        self.world = world

    async def run(self, command: str, *, timeout: float, check: bool = True,
                  stdin: str | None = None) -> CommandResult:
        if stdin is None or "stopping-" not in stdin or StallingTransport.stalled or \
                self.host.name not in ("h2", "h3"):
            return await super().run(command, timeout=timeout, check=check, stdin=stdin)
        StallingTransport.stalled = True
        half, q = len(stdin) // 2, shlex.quote
        marker, thawed = q(str(self.world / f"stalled-{self.host.name}")), q(str(self.world / "thawed"))
        line = (f"{{ head -c {half}; touch {marker}; i=0; while [ ! -e {thawed} ] && [ $i -lt 3000 ]; do "
                f"sleep 0.05; i=$((i + 1)); done; cat; }} | sh -c {q(command)}")  # never past 150 s
        return await super().run(line, timeout=timeout, check=check, stdin=stdin)


@dataclass
class StallingFleet(FakeFleet):
    world: Path | None = None

    def transport(self, host: Host, root: Path) -> FolderTransport:
        assert self.world is not None
        return StallingTransport(host, root, self.runtime.deploy_dir, self.world)


def file_fleet(world: Path, *, log: Path | None = None, quiet: float = 0.5, command_timeout: float = 10,
               one_command: bool = False, stall_input: bool = False, slow_probe: bool = False) -> FakeFleet:
    """``one_command``: each host's stop..health as one command (graylift.steps.restart, as the wiring asks
    for every configured app), with a stop that takes a second and leaves ``stopping-<version>`` in the host's
    folder as it begins, so a controller can be frozen while it runs on the host. ``stall_input``: the first
    such command on h2 or h3 gets half its script until ``<world>/thawed`` exists (:class:`StallingTransport`).
    ``slow_probe``: the health check takes a second on the host, and leaves ``probing`` in its folder
    meanwhile (so a controller can be frozen while one runs)."""
    runtime = AppRuntime(
        app=APP, env=ENV, deploy_dir=DEPLOY, keep_releases=3,
        start_command="cat {current}/VERSION > {deploy_dir}/running",
        stop_command="touch {deploy_dir}/stopping-{version}; sleep 1; rm -f {deploy_dir}/running" if one_command
        else "rm -f {deploy_dir}/running",
        command_timeout=command_timeout, drain_command=None,
        probes=[CommandProbe((f"touch {DEPLOY}/probing; sleep 1; rm {DEPLOY}/probing; " if slow_probe else "")
                             + f"test -s {DEPLOY}/running")], health_retries=2, health_interval=0.01,
        switches=[FileSwitch(world / "lb")], silencers=[FileSilencer(world / "silences")], silence_seconds=600,
        quiet_period=quiet, strategy=Strategy(canary_group="beta", batch_size=2), render=render_command,
        deploy_dirs=lambda transport: ShellDeployDir(transport, DEPLOY), fuse_host_commands=one_command,
    )
    if stall_input:
        return StallingFleet(runtime, world / "hosts", FakeRepository(world / "artifacts"), command_log=log,
                             world=world)
    return FakeFleet(runtime, world / "hosts", FakeRepository(world / "artifacts"), command_log=log)
