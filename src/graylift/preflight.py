"""Read-only checks of a release before it touches any host, and the survey behind `graylift hosts survey`.

Preflight asks every backend about every host of the release (is the HAProxy server there, the nginx
line, the registry node, can Alertmanager be reached), the artifact repository about the version, and
every host over SSH what it runs (its host key verified, its layout understood). Problems refuse the
release with the whole list, before any host is touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from graylift.core.layout import Found, LayoutError
from graylift.core.model import Host, Package
from graylift.errors import ArtifactError, GrayliftError
from graylift.ports import Clock, Fleet, Preflight, ProbeResult, Silencer, SystemClock, TrafficSwitch
from graylift.reading import survey_and_health
from graylift.runtime import HostRead, StepContext, Target, no_package

SURVEY_PARALLEL = 50
SURVEY_TIMEOUT = 30.0


@dataclass
class HostReport:
    """What one host runs and serves, read without changing anything."""

    host: Host
    found: Found | None = None
    healthy: ProbeResult | None = None
    problem: str | None = None
    read_at: datetime | None = None  # when its survey (and health) answered

    def read(self) -> HostRead | None:
        """This report as a pre-check's read taken ahead (:class:`graylift.runtime.HostRead`), if it has one."""
        if self.found is None or self.read_at is None or (self.healthy is None and not self.found.fresh):
            return None
        return HostRead(self.found, self.healthy, self.read_at)


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hosts: dict[str, HostReport] = field(default_factory=dict)
    package: Package | None = None

    def unhealthy(self) -> dict[str, str]:
        """Hosts found installed but failing their health check (a fresh host has nothing to check yet)."""
        return {name: r.healthy.detail for name, r in self.hosts.items()
                if r.found is not None and not r.found.fresh and r.healthy is not None and not r.healthy.ok}

    def versions_serving(self, only: Collection[str] | None = None) -> dict[str, int]:
        """version -> how many hosts (of ``only``, if given) run it (by their ``current``)."""
        counts: dict[str, int] = {}
        for name, report in self.hosts.items():
            if only is not None and name not in only:
                continue
            if report.found is not None and report.found.version:
                counts[report.found.version] = counts.get(report.found.version, 0) + 1
        return counts

    def fleet_version(self) -> str | None:
        """The version most hosts run (the one a first release records as the fleet's previous version)."""
        counts = self.versions_serving()
        return max(counts, key=lambda v: (counts[v], v)) if counts else None


async def survey_hosts(fleet: Fleet, hosts: Sequence[Host], *, with_health: bool, clock: Clock | None = None
                       ) -> dict[str, HostReport]:
    """Each host's layout (and, with ``with_health``, a health check), read in parallel."""
    limit = asyncio.Semaphore(SURVEY_PARALLEL)
    clock = clock or SystemClock()

    async def one(host: Host) -> HostReport:
        report = HostReport(host)
        async with limit:
            try:
                transport = await fleet.connect(host)
                target = Target("none", "none", None, no_package)
                ctx = StepContext.open(fleet.runtime, host, transport, target, 0, clock)
                if with_health:
                    report.found, report.healthy = await survey_and_health(ctx)
                    report.read_at = clock.now()
                else:
                    report.found = await ctx.dir.survey()
            except LayoutError as exc:
                report.problem = str(exc).split(": ", 1)[-1] if str(exc).startswith(host.name) else str(exc)
            except GrayliftError as exc:
                report.problem = f"cannot read it over SSH: {exc}"
        return report

    reports = await asyncio.gather(*(one(h) for h in hosts))
    return {r.host.name: r for r in reports}


async def preflight(fleet: Fleet, hosts: Sequence[Host], *, version: str | None, with_health: bool = True,
                    clock: Clock | None = None) -> Report:
    """Every read-only check of a release of ``version`` (None: no repository check) to ``hosts``; with
    ``with_health`` each installed host's health too (an unhealthy host is skipped, and counts as out)."""
    report = Report()
    if version is not None:
        try:
            report.package = await fleet.package(version)
        except ArtifactError as exc:
            report.problems.append(f"repository: {exc}")
        except GrayliftError as exc:
            report.problems.append(f"repository: cannot check {version}: {exc}")
    report.hosts = await survey_hosts(fleet, hosts, with_health=with_health, clock=clock)
    for name, host_report in report.hosts.items():
        if host_report.problem:
            report.problems.append(f"{name}: {host_report.problem}")
    checks: list[Preflight] = []
    backends: list[TrafficSwitch | Silencer] = [*fleet.runtime.switches, *fleet.runtime.silencers]
    for backend in backends:
        try:
            checks.append(await backend.preflight(hosts))
        except GrayliftError as exc:
            checks.append(Preflight(problems=(f"{backend.name}: {exc}",)))
    for check in checks:
        report.problems += check.problems
        report.notes += check.notes
    return report
