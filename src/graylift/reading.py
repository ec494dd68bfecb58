"""Reading a host: what it runs (the deploy dir's survey) and whether it is healthy (its probes).

The pre-check, the preflight and the reads ahead take these reads; the health step and the one-command restart
(:mod:`graylift.steps`) use the same probes. On a shell host whose probes are all shell probes, the survey and
one pass of the probes go as ONE command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from graylift.core.layout import Found, survey_script
from graylift.errors import RemoteCommandFailed
from graylift.ports import CommandResult, HealthProbe, ProbeResult
from graylift.runtime import StepContext


async def health(ctx: StepContext) -> ProbeResult:
    """One pass of every configured probe (one command on the host); the first failure is the result."""
    from graylift.adapters.health import check_all  # not at import: `graylift status` never needs the adapters

    return await check_all(probes(ctx), ctx.transport)


def probes(ctx: StepContext) -> list[HealthProbe]:
    """The app's probes for this host and target (placeholders filled in), or the runtime's fixed ones."""
    rt = ctx.runtime
    return list(rt.probes_for(ctx.paths()) if rt.probes_for else rt.probes)


def probes_whatever_runs(ctx: StepContext) -> list[HealthProbe] | None:
    """The host's probes if they read the same whatever version it runs (no ``{version}`` or
    ``{release_dir}`` in them), else None: then they can only be made once the survey has said what runs."""
    from graylift.adapters.health import ShellProbe  # not at import: `graylift status` never needs the adapters

    rt = ctx.runtime
    if rt.probes_for is None:
        return list(rt.probes)
    one, other = (probes(ctx.running(Found("release", name, name))) for name in ("one", "other"))
    commands = [[p.command if isinstance(p, ShellProbe) else None for p in probes] for probes in (one, other)]
    return one if None not in commands[0] and commands[0] == commands[1] else None


async def survey_and_health(ctx: StepContext) -> tuple[Found, ProbeResult | None]:
    """What the host runs and, unless nothing is installed, whether it is healthy: a pre-check's two reads.

    When the probes do not depend on the version running, both go at once: as ONE command on a shell host
    whose probes are all shell probes (:func:`_survey_and_health_in_one`), else as two over the host's
    connection; one round trip on the release's critical path either way. Else the health check follows the
    survey.
    """
    probes = probes_whatever_runs(ctx)
    if probes is None:
        found = await ctx.dir.survey()
        return found, None if found.fresh else await health(ctx.running(found))
    if fused(ctx, probes):
        return await _survey_and_health_in_one(ctx, probes)
    from graylift.adapters.health import check_all

    checking = asyncio.ensure_future(check_all(probes, ctx.transport))
    try:
        found = await ctx.dir.survey()
    except BaseException:
        checking.cancel()
        await asyncio.gather(checking, return_exceptions=True)
        raise
    if found.fresh:  # nothing installed: its health says nothing (and its failure is not an error)
        await asyncio.gather(checking, return_exceptions=True)
        return found, None
    return found, await checking


async def _survey_and_health_in_one(ctx: StepContext, probes: Sequence[HealthProbe]
                                    ) -> tuple[Found, ProbeResult | None]:
    """The survey of the deploy dir, then one attempt of every probe, as ONE command on the host
    (:mod:`graylift.adapters.transport.parts`): one SSH channel and one shell on the host where there were two."""
    from graylift.adapters.health import HostWait
    from graylift.adapters.transport.deploy_dir import QUICK, read_survey
    from graylift.adapters.transport.parts import Part, run_parts

    wait = HostWait.of(probes, retries=1, interval=0)
    assert wait is not None  # the caller asked _fused
    survey = survey_script(ctx.runtime.deploy_dir)
    results = await run_parts(ctx.transport, [Part("survey", survey), Part("health", wait.script)],
                              timeout=QUICK + wait.budget)
    if not results or results[0].exit_status != 0:
        raise RemoteCommandFailed(ctx.host.name, survey, results[0].exit_status if results else None,
                                  results[0].output if results else "the host's shell printed nothing")
    found = read_survey(results[0].output, ctx.runtime.deploy_dir, ctx.host.name)
    if found.fresh:  # nothing installed: its health says nothing
        return found, None
    if len(results) < 2:
        return found, ProbeResult(False, f"{wait.probes[0].name}: the health check did not run on the host")
    return found, wait.read(CommandResult(results[1].exit_status, results[1].output, ""))[1]


def acts_through_the_host(probe: HealthProbe) -> bool:
    """Whether ``probe`` is a shell probe: a command on the host, sent over the host's transport (which the
    engine puts behind the lease), so it needs no lease guard of its own and runs with the others in one
    command (:func:`graylift.adapters.health.check_all`, :func:`graylift.steps.restart`)."""
    from graylift.adapters.health import on_the_host

    return on_the_host([probe])


def fused(ctx: StepContext, probes: Sequence[HealthProbe]) -> bool:
    """Whether host commands and these probes may go to the host as one command: the runtime says it is a
    shell deploy dir on a shell host, and the probes can run there (every one a shell probe)."""
    from graylift.adapters.health import on_the_host

    return ctx.runtime.fuse_host_commands and on_the_host(probes)
