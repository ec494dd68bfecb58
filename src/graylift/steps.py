"""What each step of the per-host flow does on a real host, through the ports.

Every step checks before it acts, so running it twice has the effect of running it once: the
engine re-runs a step that was in progress when the controller died. The engine decides *which*
step runs and *when*; this module only knows *how*.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from graylift.core.flow import Step
from graylift.core.model import Host, Package, PackageKind, Strategy, is_plain_name
from graylift.errors import (
    ArtifactError,
    GrayliftError,
    HealthCheckFailed,
    RemoteCommandFailed,
    TrafficError,
)
from graylift.ports import Clock, HealthProbe, ProbeResult, Silencer, TrafficSwitch, Transport

SHA_MISMATCH_EXIT = 3
UNSAFE_ARCHIVE_EXIT = 4


class HostUnhealthy(GrayliftError):
    """The pre-check found the service already unhealthy: the host is skipped (or fails, by policy)."""


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
    notes: list[str] = field(default_factory=list)


@dataclass
class StepContext:
    """One host, one pass (release, revert or rollback), one target version."""

    runtime: AppRuntime
    host: Host
    transport: Transport
    package: Package  # the package of the *target* version
    release_id: int
    clock: Clock
    journal: Callable[[str, dict[str, Any]], None]  # (event, detail) for the running step

    @property
    def version(self) -> str:
        return self.package.version

    @property
    def reason(self) -> str:
        return f"graylift release #{self.release_id} of {self.runtime.app} ({self.runtime.env})"

    def paths(self) -> dict[str, str]:
        d = self.runtime.deploy_dir.rstrip("/")
        return {
            "app": self.runtime.app,
            "version": self.version,
            "deploy_dir": d,
            "current": f"{d}/current",
            "release_dir": f"{d}/releases/{self.version}",
            "host": self.host.name,
            "address": self.host.address,
        }

    def command(self, template: str) -> str:
        return self.runtime.render(template, self.paths())

    async def sh(self, script: str, *, timeout: float | None = None, check: bool = True) -> str:
        result = await self.transport.run(
            "sh -c " + shlex.quote(script), timeout=timeout or self.runtime.command_timeout, check=check
        )
        return result.stdout.strip()


async def read_current_version(ctx: StepContext) -> str | None:
    """The version ``current`` points at on the host, or None on a fresh host."""
    d = shlex.quote(ctx.runtime.deploy_dir.rstrip("/"))
    out = await ctx.sh(f"readlink {d}/current || true", timeout=30)
    name = out.rstrip("/").rsplit("/", 1)[-1] if out else ""
    return name if name and is_plain_name(name) else None


async def health(ctx: StepContext) -> ProbeResult:
    """One pass of every configured probe; the first failure is the result."""
    rt = ctx.runtime
    for probe in rt.probes_for(ctx.paths()) if rt.probes_for else rt.probes:
        result = await probe.check(ctx.transport)
        if not result.ok:
            return ProbeResult(False, f"{probe.name}: {result.detail}")
    return ProbeResult(True, "all probes pass")


# --- the steps ---------------------------------------------------------------------------------


async def precheck(ctx: StepContext) -> dict[str, Any]:
    """Is the service healthy before we touch it? A fresh host (no ``current``) passes."""
    current = await read_current_version(ctx)
    if current is None:
        return {"current": None, "note": "fresh host: nothing installed yet"}
    result = await health(ctx)
    if not result.ok:
        raise HostUnhealthy(f"{ctx.host.name}: unhealthy before release ({result.detail})")
    return {"current": current}


def _unpack_script(kind: PackageKind, archive: str, into: str) -> str:
    a, d = shlex.quote(archive), shlex.quote(into)
    if kind is PackageKind.TAR_GZ:
        # refuse absolute paths and parent-directory members before unpacking anything
        return (
            f"if tar -tzf {a} | grep -Eq '^/|(^|/)\\.\\.(/|$)'; then "
            f"echo 'package has unsafe paths (absolute or ..)' >&2; exit {UNSAFE_ARCHIVE_EXIT}; fi; "
            f"tar -xzf {a} -C {d} --no-same-owner"
        )
    if kind is PackageKind.ZIP:
        return (
            "python3 - " + a + " " + d + " <<'PY'\n"
            "import sys, zipfile, os\n"
            "z = zipfile.ZipFile(sys.argv[1])\n"
            "bad = [n for n in z.namelist() if n.startswith('/') or '..' in n.split('/')]\n"
            "sys.exit('package has unsafe paths: ' + bad[0]) if bad else z.extractall(sys.argv[2])\n"
            "PY"
        )
    return "true"  # war / jar: the file itself is the release (a war unpacks on start)


async def stage(ctx: StepContext) -> dict[str, Any]:
    """Download the package on the host, verify its sha256, unpack into releases/<version>.

    A release directory whose recorded sha256 matches is reused. The download lands in a temporary
    directory that is renamed into place only after it verified, so a half-download is never used.
    """
    pkg, rt = ctx.package, ctx.runtime
    d = rt.deploy_dir.rstrip("/")
    final = f"{d}/releases/{pkg.version}"
    tmp = f"{d}/releases/.{pkg.version}.partial"
    q = shlex.quote
    marker = f"{final}/.graylift-sha256"
    reuse = await ctx.sh(f"[ -f {q(marker)} ] && cat {q(marker)} || true", timeout=30)
    if reuse == pkg.sha256:
        pruned = await prune(ctx)
        return {"reused": final, "pruned": pruned}
    await ctx.sh(f"rm -rf {q(tmp)} && mkdir -p {q(tmp)}", timeout=30)
    archive = f"{tmp}/{pkg.filename}"
    if pkg.url:
        fetch = (
            f"if command -v curl >/dev/null; then curl -fsSL --retry 2 -o {q(archive)} {q(pkg.url)}; "
            f"else wget -q -O {q(archive)} {q(pkg.url)}; fi"
        )
        await ctx.sh(fetch, timeout=rt.stage_timeout)
    elif pkg.local_path:
        from pathlib import Path

        await ctx.transport.put(Path(pkg.local_path), archive)
    else:  # pragma: no cover - Package guarantees one of them
        raise ArtifactError(f"{pkg.app} {pkg.version}: package has neither url nor local path")
    verify = (
        f"got=$(sha256sum {q(archive)} | cut -d' ' -f1); "
        f"if [ \"$got\" != {q(pkg.sha256)} ]; then rm -rf {q(tmp)}; "
        f"echo \"sha256 mismatch: expected {pkg.sha256}, got $got\" >&2; exit {SHA_MISMATCH_EXIT}; fi; "
        + _unpack_script(pkg.kind, archive, tmp)
        + f" && echo {q(pkg.sha256)} > {q(tmp + '/.graylift-sha256')}"
        f" && rm -rf {q(final)} && mv {q(tmp)} {q(final)}"
    )
    try:
        await ctx.sh(verify, timeout=rt.stage_timeout)
    except RemoteCommandFailed as exc:
        await ctx.sh(f"rm -rf {q(tmp)}", timeout=30, check=False)
        if exc.exit_status == SHA_MISMATCH_EXIT:
            raise ArtifactError(
                f"{ctx.host.name}: sha256 of {pkg.filename} does not match the repository's "
                f"({exc.output.strip().splitlines()[-1] if exc.output.strip() else pkg.sha256}); "
                "the host was not touched. Check the artifact repository and the package's .sha256."
            ) from exc
        if exc.exit_status == UNSAFE_ARCHIVE_EXIT:
            raise ArtifactError(f"{ctx.host.name}: {pkg.filename} has unsafe paths; refused") from exc
        raise
    pruned = await prune(ctx)
    return {"staged": final, "sha256": pkg.sha256, "pruned": pruned}


async def prune(ctx: StepContext) -> list[str]:
    """Keep the newest ``keep_releases`` release dirs; never the current one or the target."""
    d = ctx.runtime.deploy_dir.rstrip("/")
    current = await read_current_version(ctx)
    keep = {ctx.version, *([current] if current else [])}
    listing = await ctx.sh(f"ls -1t {shlex.quote(d)}/releases 2>/dev/null || true", timeout=30)
    names = [n for n in listing.splitlines() if n and not n.startswith(".")]
    extra = [n for n in names if n not in keep]
    room = max(0, ctx.runtime.keep_releases - len(keep))
    doomed = [n for n in extra[room:] if is_plain_name(n)]
    if doomed:
        paths = " ".join(shlex.quote(f"{d}/releases/{n}") for n in doomed)
        await ctx.sh(f"rm -rf {paths}", timeout=60)
    return doomed


async def mute(ctx: StepContext) -> dict[str, Any]:
    until = ctx.clock.now() + timedelta(seconds=ctx.runtime.silence_seconds)
    ids = {}
    for silencer in ctx.runtime.silencers:
        ids[silencer.name] = await silencer.mute(ctx.host, until=until, reason=ctx.reason)
    return {"silences": ids, "until": until.isoformat()}


async def take_out(ctx: StepContext) -> dict[str, Any]:
    """Out of every registry and load balancer, then read each back: the host is stopped only if all agree."""
    propagation: dict[str, float] = {}
    for switch in ctx.runtime.switches:
        await switch.take_out(ctx.host)
        waited = getattr(switch, "last_wait_seconds", None)
        if waited:
            propagation[switch.name] = round(float(waited), 3)
    still_in = [s.name for s in ctx.runtime.switches if not await s.is_out(ctx.host)]
    if still_in:
        raise TrafficError(
            f"{ctx.host.name} is still in {', '.join(still_in)} after take-out; not stopping it"
        )
    return {"out_of": [s.name for s in ctx.runtime.switches], "propagation_seconds": propagation}


async def quiet(ctx: StepContext) -> dict[str, Any]:
    """Wait until traffic has drained: observed (in-flight 0, drain command) where possible, else the period.

    The configured quiet period is the upper bound. Returns how long it waited and why it stopped.
    """
    rt = ctx.runtime
    started = ctx.clock.now()
    observable = rt.drain_command is not None or any(
        [await s.in_flight(ctx.host) is not None for s in rt.switches]
    )
    waited_for = "quiet period"
    while (ctx.clock.now() - started).total_seconds() < rt.quiet_period:
        if observable and await _drained(ctx):
            waited_for = "drained"
            break
        await ctx.clock.sleep(min(0.2, rt.quiet_period))
    seconds = (ctx.clock.now() - started).total_seconds()
    detail: dict[str, Any] = {"waited_seconds": round(seconds, 3), "ended_by": waited_for}
    check = rt.traffic_check
    if check is not None:
        from graylift.adapters.observer import verify_no_new_traffic

        # raises TrafficError naming any peer (a load balancer graylift does not know) still sending
        await verify_no_new_traffic(ctx.transport, check.port, window=check.window, allowed=check.allowed)
        detail["traffic_check"] = f"no new traffic on port {check.port} for {check.window:g}s"
    return detail


async def _drained(ctx: StepContext) -> bool:
    for switch in ctx.runtime.switches:
        if (await switch.in_flight(ctx.host) or 0) > 0:
            return False
    if ctx.runtime.drain_command:
        result = await ctx.transport.run(ctx.command(ctx.runtime.drain_command), timeout=30, check=False)
        return result.ok
    return True


async def stop(ctx: StepContext) -> dict[str, Any]:
    """Run the app's stop command (which must succeed when the app is already stopped)."""
    current = await read_current_version(ctx)
    if current is None:
        return {"note": "nothing installed: nothing to stop"}
    values = ctx.paths() | {"version": current, "release_dir": f"{ctx.paths()['deploy_dir']}/releases/{current}"}
    await ctx.transport.run(ctx.runtime.render(ctx.runtime.stop_command, values),
                            timeout=ctx.runtime.command_timeout)
    return {"stopped": current}


async def switch(ctx: StepContext) -> dict[str, Any]:
    """Point ``current`` at releases/<version>, atomically (rename of a new symlink)."""
    p = ctx.paths()
    q = shlex.quote
    target = f"releases/{ctx.version}"
    await ctx.sh(
        f"[ -d {q(p['release_dir'])} ] || {{ echo 'release dir missing: {p['release_dir']}' >&2; exit 2; }}; "
        f"[ \"$(readlink {q(p['current'])})\" = {q(target)} ] && exit 0; "
        f"ln -sfn {q(target)} {q(p['deploy_dir'] + '/.current.tmp')} && "
        f"mv -Tf {q(p['deploy_dir'] + '/.current.tmp')} {q(p['current'])}",
        timeout=30,
    )
    return {"current": target}


async def start(ctx: StepContext) -> dict[str, Any]:
    await ctx.transport.run(ctx.command(ctx.runtime.start_command), timeout=ctx.runtime.command_timeout)
    return {}


async def wait_healthy(ctx: StepContext) -> dict[str, Any]:
    """Health-check the process and the app until it passes, or fail after ``retries`` attempts."""
    rt = ctx.runtime
    started = ctx.clock.now()
    result = ProbeResult(False, "no attempt")
    for attempt in range(1, rt.health_retries + 1):
        result = await health(ctx)
        if result.ok:
            return {"attempts": attempt, "seconds": round((ctx.clock.now() - started).total_seconds(), 3)}
        if attempt < rt.health_retries:
            await ctx.clock.sleep(rt.health_interval)
    raise HealthCheckFailed(
        f"{ctx.host.name}: {rt.app} {ctx.version} not healthy after {rt.health_retries} checks: {result.detail}"
    )


async def put_back(ctx: StepContext) -> dict[str, Any]:
    """Back into registries and load balancers (reverse order of take-out), verified."""
    for sw in reversed(ctx.runtime.switches):
        await sw.put_back(ctx.host)
    not_in = [s.name for s in ctx.runtime.switches if not await s.is_in(ctx.host)]
    if not_in:
        raise TrafficError(f"{ctx.host.name} is not back in {', '.join(not_in)} after put-back")
    return {"back_in": [s.name for s in ctx.runtime.switches]}


async def unmute(ctx: StepContext) -> dict[str, Any]:
    for silencer in ctx.runtime.silencers:
        await silencer.unmute(ctx.host, reason=ctx.reason)
    return {}


STEP_ACTIONS = {
    Step.PRECHECK: precheck,
    Step.STAGE: stage,
    Step.MUTE: mute,
    Step.TAKE_OUT: take_out,
    Step.QUIET: quiet,
    Step.STOP: stop,
    Step.SWITCH: switch,
    Step.START: start,
    Step.HEALTH: wait_healthy,
    Step.PUT_BACK: put_back,
    Step.UNMUTE: unmute,
}


async def run_step(step: Step, ctx: StepContext) -> dict[str, Any]:
    return await STEP_ACTIONS[step](ctx)
