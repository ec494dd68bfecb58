"""What a step works with: the app's runtime (its commands, probes and backends, built), the target of a pass
on a host, and one host's step context. The steps (:mod:`graylift.steps`) are functions of a StepContext."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from graylift.core.layout import Found
from graylift.core.model import Host, Package, Strategy
from graylift.errors import ArtifactError, GrayliftError
from graylift.ports import (
    Clock,
    DeployDir,
    HealthProbe,
    MetricsSource,
    PackagePeer,
    ProbeResult,
    Silencer,
    TrafficSwitch,
    Transport,
)

if TYPE_CHECKING:
    from graylift.adapters.artifacts import ArtifactAuth


@dataclass(frozen=True)
class TrafficCheck:
    """Watch ``port`` on the host for ``window`` seconds after take-out; only ``allowed`` peers may talk."""

    port: int
    window: float = 1.0
    allowed: frozenset[str] = frozenset()


@dataclass
class AppRuntime:
    """Everything the steps need about one app in one environment, with its adapters built."""

    app: str
    env: str
    deploy_dir: str
    keep_releases: int
    start_command: str
    stop_command: str
    command_timeout: float
    drain_command: str | None
    probes: Sequence[HealthProbe]
    health_retries: int
    health_interval: float
    switches: Sequence[TrafficSwitch]
    silencers: Sequence[Silencer]
    silence_seconds: float
    quiet_period: float
    strategy: Strategy
    render: Callable[[str, dict[str, str]], str]
    stage_timeout: float = 300.0
    traffic_check: TrafficCheck | None = None
    probes_for: Callable[[dict[str, str]], Sequence[HealthProbe]] | None = None  # per-host probes
    rebuilt_versions: bool = False  # stage each build of a version into releases/<version>+<sha12>
    artifact_auth: ArtifactAuth | None = None  # repository credentials, handed to hosts on stdin
    deploy_dirs: Callable[[Transport], DeployDir] | None = None  # the deploy dir on a host, over its transport
    metrics: MetricsSource | None = None  # the canary analysis's metrics (strategy.canary.analysis)
    peers: Callable[[Transport], PackagePeer] | None = None  # pre-staging peers; None: no pre-stage
    # a shell deploy dir on a shell host: steps may send several host commands as one (graylift.steps.restart,
    # graylift.reading.survey_and_health)
    fuse_host_commands: bool = False


@dataclass(frozen=True)
class Target:
    """What one pass puts on a host: a version in ``releases/<dir>`` holding the build with ``sha256``.

    ``sha256`` None means "the dir as it is on the host" (going back to what a pre-check found there).
    ``package`` is called only when the host lacks the dir: a revert or rollback to a release the host
    still has never contacts the artifact repository.
    """

    version: str
    dir: str
    sha256: str | None
    package: Callable[[], Awaitable[Package]]
    forward: bool = True  # a release's new version (else: going back to an older one)


async def no_package() -> Package:
    """The package of a target that is only read or restarted where it is (a survey, a health check of the
    running release, a traffic switch, a baseline restart, doctor's walk): it is never staged."""
    raise ArtifactError("this target is only read or restarted where it is: it never downloads a package")


@dataclass(frozen=True)
class HostRead:
    """A pre-check's read of a host (its survey, and its health unless nothing is installed), taken ``at``
    before its turn: by the release's preflight, or while the batch before restarted. A pre-check uses one at
    most ``strategy.precheck_ahead_seconds`` old (:class:`graylift.engine.ahead.ReadsAhead`)."""

    found: Found
    health: ProbeResult | None
    at: datetime


@dataclass
class StepContext:
    """One host, one pass (release, revert or rollback), one target."""

    runtime: AppRuntime
    host: Host
    transport: Transport
    target: Target
    release_id: int
    clock: Clock
    journal: Callable[[str, dict[str, Any]], None]  # (event, detail) for the running step
    dir: DeployDir  # the app's deploy dir on the host
    found: Found | None = None  # what this pass's pre-check found
    surveyed_now: bool = False  # that pre-check was the step just before, in this walk (not before a crash)
    require_healthy: bool = True  # a rollback's pre-check only reads: the host may be sick on a bad version
    rollback_versions: tuple[str, ...] = ()  # good versions a rollback would go to, newest first: pruned last
    ahead: HostRead | None = None  # the pre-check's read, taken before the host's turn
    silences: Mapping[str, str] = field(default_factory=dict)  # silencer -> id its mute answered in this walk

    @classmethod
    def open(cls, runtime: AppRuntime, host: Host, transport: Transport, target: Target, release_id: int,
             clock: Clock, journal: Callable[[str, dict[str, Any]], None] | None = None, **more: Any) -> StepContext:
        """A context for ``host``, its deploy dir reached through ``transport``."""
        if runtime.deploy_dirs is None:
            raise GrayliftError("the app's runtime has no deploy_dirs: wiring (or the test's fleet) must set it")
        return cls(runtime, host, transport, target, release_id, clock, journal or _ignore,
                   runtime.deploy_dirs(transport), **more)

    @property
    def version(self) -> str:
        return self.target.version

    def running(self, found: Found) -> StepContext:
        """This context with the release ``found`` on the host as its target: what a health check before the
        restart probes (``{version}``, ``{release_dir}`` of the version running, not of the one to come)."""
        version = found.version or "none"
        return replace(self, target=Target(version, found.current_dir or version, None, no_package))

    @property
    def reason(self) -> str:
        return silence_reason(self.release_id, self.runtime.app, self.runtime.env)

    def paths(self) -> dict[str, str]:
        d = self.runtime.deploy_dir.rstrip("/")
        return {
            "app": self.runtime.app,
            "version": self.version,
            "deploy_dir": d,
            "current": f"{d}/current",
            "release_dir": f"{d}/releases/{self.target.dir}",
            "host": self.host.name,
            "address": self.host.address,
        }

    def command(self, template: str) -> str:
        return self.runtime.render(template, self.paths())


def silence_reason(release_id: int, app: str, env: str) -> str:
    """The reason a release's silences carry: how a silencer finds (and lifts) the ones it made."""
    return f"graylift release #{release_id} of {app} ({env})"


def _ignore(event: str, detail: dict[str, Any]) -> None:
    return None
