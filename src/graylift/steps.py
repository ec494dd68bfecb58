"""What each step of the per-host flow does on a real host, through the ports.

Every step checks before it acts, so running it twice has the effect of running it once: the
engine re-runs a step that was in progress when the controller died. The engine decides *which*
step runs and *when*; this module only knows *how*.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from graylift.core.flow import Step
from graylift.core.layout import Found, ReleaseDirs, prune_plan
from graylift.core.model import Host
from graylift.errors import (
    ArtifactError,
    BackendsFailed,
    CommandTimeout,
    GrayliftError,
    HealthCheckFailed,
    LeaseLost,
    RemoteCommandFailed,
    TrafficError,
)
from graylift.ports import CommandResult, ProbeResult, Silencer, TrafficSwitch
from graylift.reading import fused, health, probes, survey_and_health
from graylift.runtime import StepContext, Target


class HostUnhealthy(GrayliftError):
    """The pre-check found the service already unhealthy: the host is skipped (or fails, by policy)."""


# --- the steps ---------------------------------------------------------------------------------


async def precheck(ctx: StepContext) -> dict[str, Any]:
    """What does the host run, and is it healthy? The one reading of the host's previous version.

    A fresh host (no ``current``) passes. A host already on the target (same build) and healthy is done
    (``already_on_target``). The same version with another sha256 is refused: versions are immutable.
    """
    ahead = ctx.ahead
    unhealthy = ahead is not None and ahead.health is not None and not ahead.health.ok
    if ahead is not None and (_on_target(ahead.found, ctx.target) or unhealthy):
        # judged on a read of now: a host that would be left as it is (already on the target), and one that
        # would be skipped (its app may be back since, or the read was wrong): a read ahead only saves a
        # round trip for a host that is fine
        ahead = None
    if ahead is not None:  # read before its turn (the preflight, or during the batch before): not again,
        # but the host must answer now, before anything is muted or taken out (its connection may have died):
        # a round trip that runs nothing there (a `true` was a session and five processes on the host, on
        # every host's critical path: bench/results/ping-ab)
        await ctx.transport.ping(timeout=ctx.runtime.command_timeout)
        found, result = ahead.found, ahead.health
    else:
        found, result = await survey_and_health(ctx)
    detail: dict[str, Any] = {"found": found.to_json(), "current": found.version}
    if ahead is not None:
        detail["read_ahead_seconds"] = round((ctx.clock.now() - ahead.at).total_seconds(), 3)
    if result is None:  # a fresh host: no health to read
        return detail | {"note": "fresh host: nothing installed yet"}
    tgt = ctx.target
    same_version = found.version == tgt.version
    if (same_version and tgt.sha256 and found.sha256 and found.sha256 != tgt.sha256
            and found.current_dir == tgt.dir):
        raise ArtifactError(
            f"{ctx.host.name} runs {tgt.version} with sha256 {found.sha256[:12]}..., but {tgt.version} is now "
            f"{tgt.sha256[:12]}...: versions are immutable; release a new version number, or set "
            "package.rebuilt_versions: true for rebuilt (e.g. -SNAPSHOT) builds; the host was not touched")
    detail["healthy"] = result.ok
    if not result.ok and ctx.require_healthy:
        raise HostUnhealthy(f"{ctx.host.name}: unhealthy before release ({result.detail})")
    if _on_target(found, tgt) and result.ok:
        detail["already_on_target"] = True
    return detail


def _on_target(found: Found, tgt: Target) -> bool:
    """The host runs the target's build already (its release dir, or its version where a sha256 is unknown)."""
    same_version = found.version == tgt.version
    return found.current_dir == tgt.dir or (same_version and (found.sha256 is None or tgt.sha256 is None))


async def stage(ctx: StepContext) -> dict[str, Any]:
    """Put the target build into releases/<dir>: reuse it if the host has it, else download, verify, unpack.

    Never removes or rewrites the release ``current`` points to, nor the host's previous one. A dir with the
    target's version but another recorded sha256 is refused (versions are immutable).
    """
    rt, tgt = ctx.runtime, ctx.target
    final = f"{rt.deploy_dir.rstrip('/')}/releases/{tgt.dir}"
    # the target's dir, current, every release dir: as the pass's pre-check just read them, else one read
    surveyed = ctx.found.release_dirs(tgt.dir) if ctx.surveyed_now and ctx.found is not None else None
    dirs = surveyed or await ctx.dir.release(tgt.dir)
    marker = dirs.sha256
    in_use = {n for n in (dirs.current, ctx.found.current_dir if ctx.found else None) if n}
    replace = False
    if dirs.present:
        if tgt.sha256 is None or marker == tgt.sha256:
            return {"reused": final, "sha256": marker, "pruned": await prune(ctx, dirs)}
        if marker is not None:
            raise ArtifactError(
                f"{ctx.host.name}: releases/{tgt.dir} holds {tgt.version} with sha256 {marker[:12]}..., the "
                f"repository's {tgt.version} is {tgt.sha256[:12]}...: versions are immutable; release a new "
                "version number, or set package.rebuilt_versions: true; the host was not touched")
        if tgt.dir in in_use:
            raise ArtifactError(
                f"{ctx.host.name}: releases/{tgt.dir} is in use (current or previous) and was not staged by "
                "graylift, so its build cannot be checked; graylift never rewrites a release in use: release "
                "a new version number")
        replace = True  # an unused dir another tool left: staged anew beside it, then swapped
    pkg = await tgt.package()
    if tgt.sha256 is not None and pkg.sha256 != tgt.sha256:
        raise ArtifactError(f"{ctx.host.name}: the repository's {tgt.version} is now {pkg.sha256[:12]}..., not "
                            f"the {tgt.sha256[:12]}... recorded for it: versions are immutable")
    await ctx.dir.stage(pkg, tgt.dir, version=tgt.version, auth=rt.artifact_auth, replace=replace,
                        timeout=rt.stage_timeout)
    staged = ReleaseDirs(True, pkg.sha256, dirs.current, (tgt.dir, *(n for n in dirs.listing if n != tgt.dir)))
    return {"staged": final, "sha256": pkg.sha256, "pruned": await prune(ctx, staged)}


async def prune(ctx: StepContext, dirs: ReleaseDirs) -> list[str]:
    """Keep ``keep_releases`` release dirs: always the target, the current one and the previous one; then the
    versions a rollback would go to (``ctx.rollback_versions``, newest first); then the newest others.
    ``dirs`` is the stage step's read of the deploy dir (with the target in it)."""
    previous = ctx.found.current_dir if ctx.found else None
    keep = {ctx.target.dir, *(n for n in (dirs.current, previous) if n)}
    version_of = ctx.found.version_of if ctx.found else (lambda n: n)
    doomed = prune_plan(list(dirs.listing), keep=keep, rollback_versions=ctx.rollback_versions,
                        count=ctx.runtime.keep_releases, version_of=version_of)
    await ctx.dir.remove(doomed)
    return doomed


async def _each(host: Host, action: str, backends: Sequence[Any],
                call: Callable[[Any], Awaitable[None]]) -> list[str]:
    """Run ``call`` on every backend, whatever the others do; BackendsFailed names the ones that failed."""
    failed: dict[str, str] = {}
    ok: list[str] = []
    for backend in backends:
        try:
            await call(backend)
        except GrayliftError as exc:
            failed[backend.name] = str(exc)
        else:
            ok.append(backend.name)
    if failed:
        raise BackendsFailed(host.name, action, failed, ok)
    return ok


async def mute(ctx: StepContext) -> dict[str, Any]:
    until = ctx.clock.now() + timedelta(seconds=ctx.runtime.silence_seconds)
    ids: dict[str, str] = {}

    async def one(silencer: Silencer) -> None:
        ids[silencer.name] = await silencer.mute(ctx.host, until=until, reason=ctx.reason)

    await _each(ctx.host, "mute", ctx.runtime.silencers, one)
    return {"silences": ids, "until": until.isoformat()}


async def take_out(ctx: StepContext) -> dict[str, Any]:
    """Out of every registry and load balancer, each read back: the host is stopped only if all agree.

    Then ONE wait, on the step's clock, for the slowest registry's consumers to see it: the largest
    ``propagation_seconds`` of the switches (each one's is in the detail, by name).
    """

    async def one(switch: TrafficSwitch) -> None:
        await switch.take_out(ctx.host)
        if not await switch.is_out(ctx.host):
            raise TrafficError("still in after take-out")

    out = await _each(ctx.host, "take-out (so it is not stopped)", ctx.runtime.switches, one)
    propagation = {switch.name: round(float(switch.propagation_seconds), 3) for switch in ctx.runtime.switches
                   if switch.propagation_seconds > 0}
    if propagation:
        await ctx.clock.sleep(max(propagation.values()))
    return {"out_of": out, "propagation_seconds": propagation}


async def quiet(ctx: StepContext) -> dict[str, Any]:
    """Wait until traffic has drained: observed (in-flight 0, drain command) where possible, else the period.

    The configured quiet period is the upper bound. Returns how long it waited and why it stopped. The first
    read of the switches' in-flight counts both says whether they can be observed and is the first observation.
    """
    rt = ctx.runtime
    started = ctx.clock.now()
    first = [await s.in_flight(ctx.host) for s in rt.switches]
    observable = rt.drain_command is not None or any(count is not None for count in first)
    counts: list[int | None] | None = first
    waited_for = "quiet period"
    while (ctx.clock.now() - started).total_seconds() < rt.quiet_period:
        if observable and await _drained(ctx, counts):
            waited_for = "drained"
            break
        counts = None  # read again after the sleep
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


async def _drained(ctx: StepContext, counts: Sequence[int | None] | None = None) -> bool:
    """No switch sees a request in flight (``counts``: the switches' counts just read, else read now) and the
    drain command, if any, says drained."""
    for index, switch in enumerate(ctx.runtime.switches):
        count = counts[index] if counts is not None else await switch.in_flight(ctx.host)
        if (count or 0) > 0:
            return False
    if ctx.runtime.drain_command:
        result = await ctx.transport.run(ctx.command(ctx.runtime.drain_command), timeout=30, check=False)
        return result.ok
    return True


async def stop(ctx: StepContext) -> dict[str, Any]:
    """Run the app's stop command (which must succeed when the app is already stopped)."""
    command, detail = await _stop_command(ctx)
    if command is not None:
        await ctx.transport.run(command, timeout=ctx.runtime.command_timeout)
    return detail


async def _stop_command(ctx: StepContext) -> tuple[str | None, dict[str, Any]]:
    """The stop command for the release ``current`` points at (its version and dir filled in), and the step's
    detail; no command when nothing is installed."""
    current = await ctx.dir.current()
    if current is None:
        return None, {"note": "nothing installed: nothing to stop"}
    return _stop_of(ctx, current)


def _stop_of(ctx: StepContext, current: str) -> tuple[str, dict[str, Any]]:
    """The stop command of the release in ``releases/<current>`` and the step's detail."""
    version = ctx.found.version_of(current) if ctx.found else current
    values = ctx.paths() | {"version": version, "release_dir": f"{ctx.paths()['deploy_dir']}/releases/{current}"}
    return ctx.runtime.render(ctx.runtime.stop_command, values), {"stopped": current}


async def switch(ctx: StepContext) -> dict[str, Any]:
    """Point ``current`` at releases/<dir>, atomically (rename of a new symlink)."""
    await ctx.dir.switch(ctx.target.dir)
    return {"current": f"releases/{ctx.target.dir}"}


async def start(ctx: StepContext) -> dict[str, Any]:
    await ctx.transport.run(ctx.command(ctx.runtime.start_command), timeout=ctx.runtime.command_timeout)
    return {}


async def wait_healthy(ctx: StepContext) -> dict[str, Any]:
    """Health-check the process and the app until it passes, or fail after ``retries`` attempts."""
    from graylift.adapters.health import wait_on_host

    rt = ctx.runtime
    started = ctx.clock.now()
    waited = await wait_on_host(probes(ctx), ctx.transport, retries=rt.health_retries, interval=rt.health_interval)
    if waited is not None:  # one command on the host, back as soon as the app is healthy
        attempts, result = waited
        if result.ok:
            return {"attempts": attempts, "seconds": round((ctx.clock.now() - started).total_seconds(), 3)}
        raise _not_healthy(ctx, attempts, result.detail)
    result = ProbeResult(False, "no attempt")
    for attempt in range(1, rt.health_retries + 1):
        result = await health(ctx)
        if result.ok:
            return {"attempts": attempt, "seconds": round((ctx.clock.now() - started).total_seconds(), 3)}
        if attempt < rt.health_retries:
            await ctx.clock.sleep(rt.health_interval)
    raise _not_healthy(ctx, rt.health_retries, result.detail)


def _not_healthy(ctx: StepContext, attempts: int, detail: str) -> HealthCheckFailed:
    """The health step's failure: the app and version named, with the attempts made and what the last saw."""
    return HealthCheckFailed(f"{ctx.host.name}: {ctx.runtime.app} {ctx.version} not healthy after {attempts} checks: "
                             f"{detail}")


RESTART: tuple[Step, ...] = (Step.STOP, Step.SWITCH, Step.START, Step.HEALTH)
"""The steps :func:`restart` runs as one command on the host."""


class RestartFailed(Exception):
    """A step of :func:`restart` failed: the ones before it (``done``: step, detail) ran on the host."""

    def __init__(self, step: Step, error: GrayliftError, done: list[tuple[Step, dict[str, Any]]]) -> None:
        super().__init__(f"{step.value}: {error}")
        self.step, self.error, self.done = step, error, done


def restarts_at_once(ctx: StepContext) -> bool:
    """Whether :func:`restart` can run the host's restart: host commands are fused and the host has health
    probes, every one a shell probe."""
    return ctx.runtime.fuse_host_commands and fused(ctx, probes(ctx))  # the probes rendered only if fused


async def restart(ctx: StepContext) -> list[tuple[Step, dict[str, Any]]]:
    """Stop, switch, start and the health wait in ONE command on the host, each part what its step does,
    in order, the first failure ending it: one round trip where there were five. The stop command is rendered
    for the release the pass's pre-check found ``current`` pointing at, and the command checks on the host
    that it still does before it stops anything; where it does not (another tool moved it since), nothing ran:
    ``current`` is read and the command sent again. Returns each step's detail with the seconds the host
    measured; raises :class:`RestartFailed` naming the step that failed and the ones done before it.

    The engine journals the four steps begun before the command goes out (their undo is one and the same:
    :func:`graylift.core.flow.undo_steps`), and done one by one after it.
    """
    from graylift.adapters.health import HostWait
    from graylift.adapters.transport.deploy_dir import (
        CURRENT_MOVED,
        CURRENT_MOVED_EXIT,
        QUICK,
        current_is_script,
        switch_script,
    )
    from graylift.adapters.transport.parts import Part, budget, run_parts

    rt, host = ctx.runtime, ctx.host.name
    wait = HostWait.of(probes(ctx), retries=rt.health_retries, interval=rt.health_interval)
    assert wait is not None  # the engine asked restarts_at_once
    bounds = {Step.STOP: rt.command_timeout, Step.SWITCH: QUICK, Step.START: rt.command_timeout}
    found = ctx.found.current_dir if ctx.found is not None else None
    for expected in ((found,) if found else ()) + (None,):  # the pre-check's, then a fresh read of `current`
        stop_command, stop_detail = _stop_of(ctx, expected) if expected else await _stop_command(ctx)
        scripts = {Step.STOP: stop_command or ":", Step.SWITCH: switch_script(rt.deploy_dir, ctx.target.dir),
                   Step.START: ctx.command(rt.start_command), Step.HEALTH: wait.script}
        parts = [Part(s.value, scripts[s], bounds.get(s)) for s in RESTART]
        guard = [Part("current", current_is_script(rt.deploy_dir, expected))] if expected else []
        try:
            results = await run_parts(ctx.transport, guard + parts, timeout=budget(parts, wait.budget + QUICK))
        except LeaseLost:
            raise
        except GrayliftError as exc:  # not run, cut off or timed out: which part is unknown; their undo is the same
            raise RestartFailed(Step.STOP, exc, []) from exc
        if not guard:
            break
        checked, results = (results[0] if results else None), results[1:]
        if checked is not None and checked.exit_status == 0:
            break
        if checked is None or checked.exit_status != CURRENT_MOVED_EXIT or CURRENT_MOVED not in checked.output:
            status, said = (checked.exit_status, checked.output) if checked else (None, "")
            raise RestartFailed(Step.STOP, RemoteCommandFailed(host, guard[0].script, status, said), [])
    details = {Step.STOP: stop_detail, Step.SWITCH: {"current": f"releases/{ctx.target.dir}"}, Step.START: {}}
    done: list[tuple[Step, dict[str, Any]]] = []
    for step, result in zip(RESTART, results, strict=False):
        seconds = {} if result.seconds is None else {"seconds": result.seconds}
        if step is Step.HEALTH:
            attempts, seen = wait.read(CommandResult(result.exit_status, result.output, ""))
            if not seen.ok:
                raise RestartFailed(step, _not_healthy(ctx, attempts, seen.detail), done)
            done.append((step, {"attempts": attempts} | seconds))
        elif result.timed_out:
            raise RestartFailed(step, CommandTimeout(host, scripts[step], bounds[step]), done)
        elif result.exit_status != 0:
            raise RestartFailed(step, RemoteCommandFailed(host, scripts[step], result.exit_status, result.output),
                                done)
        else:
            done.append((step, details[step] | seconds))
    if len(done) < len(RESTART):
        missing = RESTART[len(done)]
        raise RestartFailed(missing, GrayliftError(f"{host}: the host's shell stopped before {missing.value}"), done)
    return done


async def put_back(ctx: StepContext) -> dict[str, Any]:
    """Back into registries and load balancers (reverse order of take-out), each verified, each tried
    whatever the others do: one broken backend never keeps a host out of the working ones."""

    async def one(switch: TrafficSwitch) -> None:
        await switch.put_back(ctx.host)
        if not await switch.is_in(ctx.host):
            raise TrafficError("not back in after put-back")

    return {"back_in": await _each(ctx.host, "put-back", list(reversed(ctx.runtime.switches)), one)}


async def unmute(ctx: StepContext) -> dict[str, Any]:
    async def one(silencer: Silencer) -> None:
        await silencer.unmute(ctx.host, reason=ctx.reason, silence_id=ctx.silences.get(silencer.name))

    return {"unmuted": await _each(ctx.host, "unmute", ctx.runtime.silencers, one)}


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
