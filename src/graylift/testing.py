"""Fakes of every port, for tests of the engine and for the simulation (the way httpx ships MockTransport).

They are typed against :mod:`graylift.ports` and public. They do not replace tests against real servers;
they make the engine's own tests fast and exact:

* :class:`FolderTransport`: a host is a folder on this machine; commands run locally with the app's deploy
  dir mapped to the host's folder, so the real steps (survey, stage, switch, start) run unchanged.
* :class:`FakeSwitch` / :class:`FakeSilencer`: in-memory load balancer and monitoring, recording every call,
  with failures to inject per operation and host.
* :class:`FakeRepository`: packages from a directory, which can be taken down.
* :class:`FakeFleet`: the three above behind the engine's :class:`graylift.ports.Fleet`.
* :class:`FakeClock`: time that moves only when slept on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from graylift.adapters.artifacts import LocalDirArtifactStore
from graylift.adapters.transport.local import LocalTransport
from graylift.core.model import Host, Package, PackageKind
from graylift.errors import (
    ArtifactError,
    HostUnreachable,
    MetricsError,
    RemoteCommandFailed,
    SilencerError,
    TrafficError,
)
from graylift.ports import CommandResult, Preflight
from graylift.runtime import AppRuntime

PING = "(ping)"  # how a FolderTransport lists a ping among its commands


class FolderTransport(LocalTransport):
    """A host is a folder: ``deploy_dir`` in every command is mapped to ``root``."""

    def __init__(self, host: Host, root: Path, deploy_dir: str) -> None:
        super().__init__(host)
        self.root, self.deploy_dir = root, deploy_dir.rstrip("/")
        self.commands: list[str] = []
        self.unreachable = False
        self.log: Path | None = None  # per command: the time it started, the host, its exit status, its tail

    async def run(self, command: str, *, timeout: float, check: bool = True,
                  stdin: str | None = None) -> CommandResult:
        if self.unreachable:
            raise HostUnreachable(self.host.name, "connection refused (fake)")
        self.commands.append(command)
        mapped = command.replace(self.deploy_dir, str(self.root))
        if stdin is not None:  # a script on stdin (the health probes' one command) names the deploy dir too
            stdin = stdin.replace(self.deploy_dir, str(self.root))
        started, status = time.time(), "-"
        try:
            result = await super().run(mapped, timeout=timeout, check=check, stdin=stdin)
            status = str(result.exit_status)
            return result
        except RemoteCommandFailed as exc:
            status = str(exc.exit_status)
            raise
        finally:
            if self.log is not None:
                with self.log.open("a") as log:
                    log.write(f"{started:.6f} {self.host.name} {status} {command[-80:]!r}\n")

    async def ping(self, *, timeout: float) -> None:
        if self.unreachable:
            raise HostUnreachable(self.host.name, "connection refused (fake)")
        self.commands.append(PING)

    async def put(self, local: Path, remote: str) -> None:
        await super().put(local, remote.replace(self.deploy_dir, str(self.root)))


def _fail(fails: set[tuple[str, str]], op: str, host: Host) -> bool:
    return (op, host.name) in fails or (op, "*") in fails


@dataclass
class FakeSwitch:
    """A load balancer / registry in memory. ``fails`` holds (operation, host or "*") pairs that raise."""

    name: str = "fake-lb"
    propagation_seconds: float = 0.0
    out: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fails: set[tuple[str, str]] = field(default_factory=set)
    known: set[str] | None = None  # hosts this backend has an entry for (None: every host)
    observe: Callable[[FakeSwitch], None] | None = None  # called after every change (invariant checks)

    async def _op(self, op: str, host: Host) -> None:
        """Before ``take_out`` / ``put_back`` changes anything: the call recorded, and the failure ``fails`` holds
        for it, if any."""
        self.calls.append((op, host.name))
        if _fail(self.fails, op, host):
            raise TrafficError(f"{self.name}: {op.replace('_', '-')} of {host.name} refused (fake)")

    async def take_out(self, host: Host) -> None:
        await self._op("take_out", host)
        self.out.add(host.name)
        if self.observe is not None:
            self.observe(self)

    async def put_back(self, host: Host) -> None:
        await self._op("put_back", host)
        self.out.discard(host.name)

    async def is_out(self, host: Host) -> bool:
        return host.name in self.out

    async def is_in(self, host: Host) -> bool:
        return host.name not in self.out

    async def in_flight(self, host: Host) -> int | None:
        return 0

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        missing = [h.name for h in hosts if self.known is not None and h.name not in self.known]
        return Preflight(problems=tuple(f"{self.name}: no entry for {name}; add it to the backend" for name in missing))

    async def close(self) -> None:
        return None


@dataclass
class FakeSilencer:
    name: str = "fake-alerts"
    muted: dict[str, datetime] = field(default_factory=dict)
    fails: set[tuple[str, str]] = field(default_factory=set)
    reachable: bool = True
    unmuted_with: dict[str, str | None] = field(default_factory=dict)  # host -> the silence id its unmute got

    async def _op(self, op: str, host: Host) -> None:
        """Before ``mute`` / ``unmute`` changes anything: the failure ``fails`` holds for it, if any."""
        if _fail(self.fails, op, host):
            raise SilencerError(f"{self.name}: {op} of {host.name} refused (fake)")

    async def mute(self, host: Host, *, until: datetime, reason: str) -> str:
        await self._op("mute", host)
        self.muted[host.name] = until
        return f"silence-{host.name}"

    async def unmute(self, host: Host, *, reason: str, silence_id: str | None = None) -> None:
        await self._op("unmute", host)
        self.unmuted_with[host.name] = silence_id
        self.muted.pop(host.name, None)

    async def is_muted(self, host: Host, *, reason: str) -> bool:
        return host.name in self.muted

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        return Preflight() if self.reachable else Preflight(problems=(f"{self.name}: unreachable (fake)",))

    async def close(self) -> None:
        return None


class FileSwitch:
    """A load balancer whose state is files (``<dir>/<host>`` exists while the host is out): shared by several
    controller processes, for tests that kill or freeze them."""

    propagation_seconds = 0.0

    def __init__(self, directory: Path, name: str = "file-lb") -> None:
        self.directory, self.name = directory, name
        directory.mkdir(parents=True, exist_ok=True)

    def out(self) -> set[str]:
        return {p.name for p in self.directory.iterdir()}

    async def take_out(self, host: Host) -> None:
        (self.directory / host.name).touch()

    async def put_back(self, host: Host) -> None:
        (self.directory / host.name).unlink(missing_ok=True)

    async def is_out(self, host: Host) -> bool:
        return (self.directory / host.name).exists()

    async def is_in(self, host: Host) -> bool:
        return not (self.directory / host.name).exists()

    async def in_flight(self, host: Host) -> int | None:
        return 0

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        return Preflight()

    async def close(self) -> None:
        return None


class FileSilencer:
    """A silencer whose silences are files (``<dir>/<host>``), shared by several controller processes."""

    def __init__(self, directory: Path, name: str = "file-alerts") -> None:
        self.directory, self.name = directory, name
        directory.mkdir(parents=True, exist_ok=True)

    def muted(self) -> set[str]:
        return {p.name for p in self.directory.iterdir()}

    async def mute(self, host: Host, *, until: datetime, reason: str) -> str:
        (self.directory / host.name).write_text(until.isoformat())
        return host.name

    async def unmute(self, host: Host, *, reason: str, silence_id: str | None = None) -> None:
        (self.directory / host.name).unlink(missing_ok=True)

    async def is_muted(self, host: Host, *, reason: str) -> bool:
        return (self.directory / host.name).exists()

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        return Preflight()

    async def close(self) -> None:
        return None


class FakeRepository:
    """Packages ``<app>-<version>.<ext>`` from a directory; ``down`` makes every lookup fail."""

    def __init__(self, directory: Path, kind: PackageKind = PackageKind.TAR_GZ) -> None:
        self.store = LocalDirArtifactStore(directory=directory, kind=kind)
        self.down = False
        self.resolved: list[str] = []

    async def resolve(self, app: str, version: str) -> Package:
        if self.down:
            raise ArtifactError(f"artifact repository unreachable (fake): cannot resolve {app} {version}")
        self.resolved.append(version)
        return await self.store.resolve(app, version)


@dataclass
class FakeFleet:
    """Hosts as folders under ``folders``, packages from ``repository``, adapters in ``runtime``."""

    runtime: AppRuntime
    folders: Path
    repository: FakeRepository
    unreachable: set[str] = field(default_factory=set)
    transports: dict[str, FolderTransport] = field(default_factory=dict)
    command_log: Path | None = None  # every host command with its start time (several processes append)

    async def connect(self, host: Host) -> FolderTransport:
        if host.name in self.unreachable:
            raise HostUnreachable(host.name, "connection refused (fake)")
        if host.name not in self.transports:
            root = self.folders / host.name
            root.mkdir(parents=True, exist_ok=True)
            self.transports[host.name] = self.transport(host, root)
            self.transports[host.name].log = self.command_log
        return self.transports[host.name]

    def transport(self, host: Host, root: Path) -> FolderTransport:
        """The transport of a host this fleet connects to for the first time (a subclass may give another)."""
        return FolderTransport(host, root, self.runtime.deploy_dir)

    async def package(self, version: str) -> Package:
        return await self.repository.resolve(self.runtime.app, version)

    async def close(self) -> None:
        return None


FAKE_QUERIES = tuple((metric, f"{metric} {{hosts}}") for metric in ("latency_p50", "latency_p99", "requests", "errors"))
"""Analysis queries :class:`FakeMetrics` understands: ``<metric> <hosts regex>``."""


@dataclass
class FakeMetrics:
    """A metrics source answering :data:`FAKE_QUERIES` from per-host numbers: each host serves ``requests``
    requests a window, ``error_rate`` of them 5xx, latency ``latency`` seconds (x ``slow[host]``), ten samples
    a window with a little deterministic jitter. A host in ``silent`` has no series; ``down`` fails every query."""

    requests: float = 2000.0
    latency: float = 0.010
    error_rate: dict[str, float] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    down: bool = False
    queries: list[str] = field(default_factory=list)

    async def query_range(self, query: str, *, start: datetime, end: datetime, step: float
                          ) -> list[tuple[float, ...]]:
        self.queries.append(query)
        if self.down:
            raise MetricsError("prometheus: POST /api/v1/query_range failed: ConnectError (fake)")
        metric, regex = query.split(" ", 1)
        hosts = [h for h in regex.replace("\\\\", "").split("|") if h not in self.silent]
        if not hosts:
            return []
        if metric == "requests":
            return [(self.requests * len(hosts),)]
        if metric == "errors":
            return [(sum(self.requests * self.error_rate.get(h, 0.0) for h in hosts),)]
        factor = sum(self.slow.get(h, 1.0) for h in hosts) / len(hosts) * (2 if metric == "latency_p99" else 1)
        return [tuple(self.latency * factor * (1 + 0.01 * ((i * 7) % 11 - 5)) for i in range(10))]

    async def close(self) -> None:
        return None


class FakeClock:
    """Time that moves only when someone sleeps (each sleep yields to the event loop once)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


__all__ = ["FAKE_QUERIES", "FakeClock", "FakeFleet", "FakeMetrics", "FakeRepository", "FakeSilencer", "FakeSwitch",
           "FileSilencer", "FileSwitch", "FolderTransport"]
