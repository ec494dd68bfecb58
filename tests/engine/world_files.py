"""A fleet whose every piece of state is files (folder hosts, file LB, file silences), so several controller
processes share it."""

from __future__ import annotations

from pathlib import Path

from graylift.adapters.health import CommandProbe
from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.config import render_command
from graylift.core.model import Strategy
from graylift.runtime import AppRuntime
from graylift.testing import FakeFleet, FakeRepository, FileSilencer, FileSwitch
from tests.engine.conftest import APP, DEPLOY, ENV, VERSIONS, package_bytes


def prepare(world: Path) -> None:
    artifacts = world / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    for version, healthy in VERSIONS.items():
        (artifacts / f"{APP}-{version}.tar.gz").write_bytes(package_bytes(version, healthy))


def file_fleet(world: Path, *, log: Path | None = None, quiet: float = 0.5, command_timeout: float = 10,
               one_command: bool = False) -> FakeFleet:
    """``one_command``: each host's stop..health as one command (graylift.steps.restart, as the wiring asks
    for every configured app), with a stop that takes a second and leaves ``stopping-<version>`` in the host's
    folder as it begins, so a controller can be frozen while it runs on the host."""
    runtime = AppRuntime(
        app=APP, env=ENV, deploy_dir=DEPLOY, keep_releases=3,
        start_command="cat {current}/VERSION > {deploy_dir}/running",
        stop_command="touch {deploy_dir}/stopping-{version}; sleep 1; rm -f {deploy_dir}/running" if one_command
        else "rm -f {deploy_dir}/running",
        command_timeout=command_timeout, drain_command=None,
        probes=[CommandProbe(f"test -s {DEPLOY}/running")], health_retries=2, health_interval=0.01,
        switches=[FileSwitch(world / "lb")], silencers=[FileSilencer(world / "silences")], silence_seconds=600,
        quiet_period=quiet, strategy=Strategy(canary_group="beta", batch_size=2), render=render_command,
        deploy_dirs=lambda transport: ShellDeployDir(transport, DEPLOY), fuse_host_commands=one_command,
    )
    return FakeFleet(runtime, world / "hosts", FakeRepository(world / "artifacts"), command_log=log)
