"""The small interfaces the engine drives. One module per backend under ``graylift.adapters``.

Every method is idempotent: calling it twice has the effect of calling it once, because the
engine re-runs a step that was killed right after its side effect. Adapters translate their
library's errors into ``graylift.errors`` at this boundary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from graylift.core.model import Host, Package

if TYPE_CHECKING:
    from graylift.adapters.artifacts import ArtifactAuth
    from graylift.core.layout import Found, ReleaseDirs
    from graylift.runtime import AppRuntime


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@runtime_checkable
class Transport(Protocol):
    """Runs commands on one host and copies files to it. Kept open for a whole release."""

    host: Host

    async def run(self, command: str, *, timeout: float, check: bool = True,
                  stdin: str | None = None) -> CommandResult:
        """Run a shell command. Raises CommandTimeout, HostUnreachable, and (if check)
        RemoteCommandFailed with the exit code and the last lines of output.

        ``stdin`` is written to the command's standard input: the way to hand a secret to a host
        (a credential in argv is visible in ``ps`` and lands in logs)."""
        ...

    async def ping(self, *, timeout: float) -> None:
        """A round trip to the host that runs nothing on it (SSH: a keepalive request on the connection, which
        opens it if needed): returns when the host answered, else raises HostUnreachable or CommandTimeout."""
        ...

    async def put(self, local: Path, remote: str) -> None:
        """Copy a local file to a remote path (the parent directory must exist)."""
        ...

    async def close(self) -> None: ...


class Connector(Protocol):
    """Opens transports; one per fleet (SSH with known_hosts, or local)."""

    async def connect(self, host: Host) -> Transport: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Preflight:
    """What a read-only check of one backend against the hosts of a release found.

    ``problems`` refuse the release before any host is touched: each is one line naming the backend,
    the host and what to do. ``notes`` are facts worth showing (e.g. which nginx layout was found).
    """

    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __add__(self, other: Preflight) -> Preflight:
        return Preflight(self.problems + other.problems, self.notes + other.notes)


class TrafficSwitch(Protocol):
    """A load balancer or service registry entry for a host: take out, put back, verify."""

    name: str  # shown in messages, e.g. "haproxy:web" or "zookeeper:/dubbo/com.acme.OrderService"
    # Seconds a registry's consumers need to see a take-out (they cache provider lists); 0 for a load
    # balancer. The take-out step waits the largest of them once, on its clock, after every switch is out.
    propagation_seconds: float

    async def take_out(self, host: Host) -> None:
        """Stop sending new traffic to the host (drain). Idempotent."""
        ...

    async def put_back(self, host: Host) -> None:
        """Send traffic to the host again. Idempotent."""
        ...

    async def is_out(self, host: Host) -> bool:
        """Read the backend back: True when no new traffic can reach the host."""
        ...

    async def is_in(self, host: Host) -> bool:
        """Read the backend back: True when the host is in and taking traffic (e.g. HAProxy sees it UP)."""
        ...

    async def in_flight(self, host: Host) -> int | None:
        """Requests/sessions still open on the host, or None when this backend cannot tell."""
        ...

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """Read-only: can this backend see and switch every one of ``hosts``? Changes nothing."""
        ...

    async def close(self) -> None:
        """Release connections and sessions; the switch is not used afterwards."""
        ...


class Silencer(Protocol):
    """Mutes alerts for a host until a fixed time, so a silence lapses by itself if graylift dies."""

    name: str

    async def mute(self, host: Host, *, until: datetime, reason: str) -> str:
        """Create (or find, for the same host and reason) an active silence; returns its id."""
        ...

    async def unmute(self, host: Host, *, reason: str, silence_id: str | None = None) -> None:
        """Expire every active silence this reason made for the host. Idempotent. ``silence_id`` is what
        this silencer's mute of the host answered in the same walk, when known: a mute reuses an active
        silence, so it is the only one, and a silencer may expire it without looking for others first."""
        ...

    async def is_muted(self, host: Host, *, reason: str) -> bool: ...

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """Read-only: is the monitoring system reachable and able to silence ``hosts``?"""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


class HealthProbe(Protocol):
    """One health check of the app on a host, run through the host's transport."""

    name: str

    async def check(self, transport: Transport) -> ProbeResult: ...


class MetricsSource(Protocol):
    """A time-series database (Prometheus) the canary analysis reads. Raises MetricsError when a query fails."""

    async def query_range(self, query: str, *, start: datetime, end: datetime, step: float
                          ) -> list[tuple[float, ...]]:
        """The values of each series the query returns over [start, end] every ``step`` seconds (steps with
        no value, NaN, left out). An empty list is no data, never zero."""
        ...

    async def close(self) -> None: ...


class Inventory(Protocol):
    """The CMDB: which hosts run an app in an environment. Raises InventoryError, never a partial list."""

    async def hosts(self, app: str, env: str) -> list[Host]: ...


class ArtifactStore(Protocol):
    """Finds a package version and its sha256 (which every host then verifies)."""

    async def resolve(self, app: str, version: str) -> Package: ...


class Clock(Protocol):
    """Time for the engine and the steps: injected, so tests and the simulation run on a fake one."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (a lease's own deadline is kept on it)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Fleet(Protocol):
    """What the engine needs to touch the hosts of one release (built from the release's config snapshot)."""

    runtime: AppRuntime

    async def connect(self, host: Host) -> Transport: ...

    async def package(self, version: str) -> Package:
        """The package of ``version``: pinned in the release if it was resolved before, else resolved from the
        artifact repository (and pinned). Only called when a host needs to download it."""
        ...

    async def close(self) -> None: ...


class DeployDir(Protocol):
    """The app's deploy dir on one host: ``releases/<dir>`` side by side and the ``current`` link.

    The steps decide; this only reads and changes the dir. Every method is safe to repeat.
    """

    async def survey(self) -> Found:
        """What is there (raises LayoutError for a layout graylift does not understand). Read-only."""
        ...

    async def current(self) -> str | None:
        """The release dir ``current`` points at, or None."""
        ...

    async def release(self, name: str) -> ReleaseDirs:
        """In one read: whether ``releases/<name>`` exists and the sha256 graylift recorded in it, where
        ``current`` points, and every release dir, newest first."""
        ...

    async def stage(self, pkg: Package, name: str, *, version: str, auth: ArtifactAuth | None, replace: bool,
                    timeout: float) -> None:
        """Fetch ``pkg``, verify its sha256, unpack it into ``releases/<name>`` with its markers (``replace``: an
        unused dir of that name is swapped out). ArtifactError on a mismatch or an unsafe archive."""
        ...

    async def stage_if_needed(self, pkg: Package, name: str, *, version: str, auth: ArtifactAuth | None,
                              min_free: int, timeout: float) -> ReleaseDirs | None:
        """:meth:`stage` (not ``replace``) unless ``releases/<name>`` is there or fewer than ``min_free`` bytes
        are free where it would go, looked at in the same round trip as the stage: None when it staged, else
        what it found (``present``, or absent with ``free_bytes``), nothing fetched."""
        ...

    async def remove(self, names: list[str]) -> None: ...

    async def switch(self, name: str) -> None:
        """Point ``current`` at ``releases/<name>``, atomically."""
        ...


class PackagePeer(Protocol):
    """One host as a pre-staging peer (graylift.engine.prestage): a short-lived HTTP server that hands the
    verified package it staged to other hosts of the release (its free space comes with the deploy dir's
    :meth:`DeployDir.release`). Every method is safe to repeat."""

    async def serve(self, name: str, filename: str, *, address: str, token: str, lifetime: float) -> tuple[int, int]:
        """Serve ``releases/<name>/<filename>`` at ``/<token>/<filename>`` on ``address`` (a random free port),
        for at most ``lifetime`` seconds; returns (port, pid). The token goes to the host on stdin."""
        ...

    async def stop(self, pid: int) -> None:
        """Stop the server ``serve`` started (only if ``pid`` is still that server)."""
        ...
