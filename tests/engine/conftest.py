"""A fleet of folder hosts, fake traffic backends and silencers, and the real engine, store and steps.

The hosts are folders on this machine (commands run locally with the app's deploy dir mapped to the host's
folder); the load balancers and the silencer are in-memory fakes (graylift.testing) that record what was
asked. Everything else, the store (SQLite), the steps, the plan, the policies, is the real code.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from graylift.adapters.health import CommandProbe
from graylift.adapters.transport.deploy_dir import ShellDeployDir
from graylift.config import render_command
from graylift.core.model import Host, Strategy
from graylift.core.plan import make_plan
from graylift.core.state import HostState
from graylift.engine import Engine
from graylift.runtime import AppRuntime
from graylift.store import ReleaseRecord, Store
from graylift.testing import FakeFleet, FakeRepository, FakeSilencer, FakeSwitch

APP, ENV, DEPLOY = "demo", "prod", "/srv/demo"
VERSIONS = {"1.0.0": True, "2.0.0": True, "3.0.0": False, "4.0.0": True, "5.0.0": True}  # version -> healthy


def package_bytes(version: str, healthy: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = (version if healthy else "").encode()
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def hosts_of(n: int, beta: int = 1) -> list[Host]:
    return [Host(f"h{i}", f"10.0.0.{i}", group="beta" if i <= beta else "prod") for i in range(1, n + 1)]


@dataclass
class World:
    store: Store
    fleet: FakeFleet
    switches: list[FakeSwitch]
    silencer: FakeSilencer
    folders: Path
    hosts: list[Host]
    repository: FakeRepository
    max_out_seen: int = 0
    engines: list[Engine] = field(default_factory=list)

    @property
    def switch(self) -> FakeSwitch:
        return self.switches[0]

    def engine(self, owner: str | None = None) -> Engine:
        async def factory(rec: ReleaseRecord) -> FakeFleet:
            return self.fleet

        return Engine(self.store, factory, owner=owner)

    def start(self, version: str, strategy: Strategy | None = None, *, kind: str = "release",
              previous: str | None = None) -> int:
        strategy = strategy or self.fleet.runtime.strategy
        # what the preflight's survey finds: hosts installed but not serving are known unhealthy
        unhealthy = {h.name: "not running" for h in self.hosts
                     if (self.folders / h.name / "current").is_symlink() and not self.running(h.name)}
        plan = make_plan(self.hosts, strategy, canary=kind == "release", unhealthy=unhealthy)
        runs: list[tuple[Host, int, str | None]] = [(h, plan.batch_of(h.name), None) for h in self.hosts
                                                     if h.name in plan.hosts]
        packages = {} if kind != "release" else {version: asyncio.run(self.fleet.package(version)).to_json()}
        rec = self.store.create_release(app=APP, env=ENV, kind=kind, version=version,
                                        previous_version=previous or self.store.current_version(APP, ENV),
                                        plan=plan.to_dict() | {"packages": packages}, config={}, started_by="test",
                                        host_runs=runs)
        return rec.id

    def drive(self, release_id: int, owner: str | None = None) -> ReleaseRecord:
        return asyncio.run(self.engine(owner).drive(release_id))

    def release(self, version: str) -> ReleaseRecord:
        return self.drive(self.start(version))

    def current(self, host: str) -> str:
        return (self.folders / host / "current").readlink().name

    def running(self, host: str) -> str:
        path = self.folders / host / "running"
        return path.read_text().strip() if path.exists() else ""

    def states(self, release_id: int) -> dict[str, HostState]:
        return {r.host: r.state for r in self.store.host_runs(release_id)}

    def install_by_script(self, host: str, version: str, *, absolute_link: bool = True) -> None:
        """What another tool leaves: releases/<version> with no graylift marker, ``current`` -> it, running."""
        root = self.folders / host
        release = root / "releases" / version
        release.mkdir(parents=True, exist_ok=True)
        (release / "VERSION").write_text(version if VERSIONS.get(version, True) else "")
        link = root / "current"
        if link.is_symlink():
            link.unlink()
        # an absolute link names the deploy dir as it is on the host (Capistrano does this)
        link.symlink_to(f"{DEPLOY}/releases/{version}" if absolute_link else Path("releases") / version)
        (root / "running").write_text(version)

    def not_serving(self) -> set[str]:
        """Hosts out of a load balancer, or whose app does not run: what the 50% rule bounds."""
        out = set().union(*(s.out for s in self.switches))
        return out | {h.name for h in self.hosts if not self.running(h.name)}

    def watch_the_cap(self) -> None:
        """Record the most hosts ever out or not serving at once, checked at every take-out."""

        def observe(_: FakeSwitch) -> None:
            self.max_out_seen = max(self.max_out_seen, len(self.not_serving()))

        for switch in self.switches:
            switch.observe = observe


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    stores: list[Store] = []

    def make(n: int = 6, *, beta: int = 1, strategy: Strategy | None = None, switches: int = 1) -> World:
        root = tmp_path / f"world{len(stores)}"
        artifacts = root / "artifacts"
        artifacts.mkdir(parents=True)
        for version, healthy in VERSIONS.items():
            (artifacts / f"{APP}-{version}.tar.gz").write_bytes(package_bytes(version, healthy))
        fakes = [FakeSwitch(name=f"lb{i}") for i in range(1, switches + 1)]
        silencer = FakeSilencer()
        runtime = AppRuntime(
            app=APP, env=ENV, deploy_dir=DEPLOY, keep_releases=3,
            start_command="cat {current}/VERSION > {deploy_dir}/running", stop_command="rm -f {deploy_dir}/running",
            command_timeout=10, drain_command=None,
            probes=[CommandProbe(f"test -s {DEPLOY}/running")], health_retries=2, health_interval=0.01,
            switches=fakes, silencers=[silencer], silence_seconds=600, quiet_period=0.0,
            strategy=strategy or Strategy(canary_group="beta", batch_size=2), render=render_command,
            deploy_dirs=lambda transport: ShellDeployDir(transport, DEPLOY),
        )
        folders = root / "hosts"
        folders.mkdir()
        repository = FakeRepository(artifacts)
        fleet = FakeFleet(runtime, folders, repository)
        store = Store.open(f"sqlite:///{root}/state.db")
        stores.append(store)
        return World(store, fleet, fakes, silencer, folders, hosts_of(n, beta), repository)

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()
