"""The simulated host's side of the commands graylift sends as one (``sh -s`` with a script on stdin): the parts
of :mod:`graylift.adapters.transport.parts` (survey, the check of ``current``, stop, switch, start, the wait for
health) and the wait for health of :func:`graylift.adapters.health.wait_on_host`
(:class:`~graylift.adapters.health.HostWait`) on its own.

Each part does to the :class:`~graylift.sim.world.SimHost` what the separate operation does (the same effect,
the same faults, an await point after it), and prints what the real host prints, so graylift reads the answer
with its own parsers. A part whose operation hangs is stopped at its timeout (exit 124), as ``timeout`` stops it
on a real host; the parts after a failed one do not run. A host runs a command to its end whatever happens to
its controller: a controller stopped (killed or frozen) at a point inside one stops once no such command runs
(:meth:`graylift.sim.world.World.point`).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from graylift.adapters.health import ShellProbe
from graylift.adapters.transport.deploy_dir import CURRENT_MOVED, CURRENT_MOVED_EXIT
from graylift.core.layout import SURVEY_ORDER
from graylift.ports import CommandResult, ProbeResult

if TYPE_CHECKING:
    from graylift.sim.world import SimHost, World

PART = re.compile(r"^printf '\\n%s %s %s %s %s\\n' (\S+) (\S+) ", re.M)  # parts_script's status line
PROBE = re.compile(r"printf '\\n(\S+) %s\\n'")  # HostWait.script: the line after a probe
RETRIES = re.compile(r'\[ "\$i" -ge (\d+) \]')
INTERVAL = re.compile(r"^\s*sleep (\S+)$", re.M)
SWITCH_TO = re.compile(r"\[ -d \S*/releases/([A-Za-z0-9._+-]+) \]")
CURRENT_IS = re.compile(r'case "\$l" in \'?(?:\./)?releases/([A-Za-z0-9._+-]+)')  # current_is_script: its dir
PROBE_COMMAND = "sim-health"
TIMED_OUT = 124


class SimShellProbe(ShellProbe):
    """The app's health check as a shell probe (``sim-health`` on the host): what the simulated shell answers."""

    name = "sim-health"
    command = PROBE_COMMAND
    timeout = 5.0

    def read(self, result: CommandResult | None) -> ProbeResult:
        if result is None:
            return ProbeResult(False, "health check timed out (simulated)")
        return ProbeResult(result.ok, result.stdout.strip() or "ok")


def health_of(world: World, host: str) -> ProbeResult:
    """One health check of the app on ``host`` (the fault ``health`` makes it fail)."""
    state = world.hosts[host]
    if world.faults.hit("health", host):
        return ProbeResult(False, "health check failed (simulated)")
    if state.running is None:
        return ProbeResult(False, "not running")
    if state.running not in world.healthy_versions:
        return ProbeResult(False, f"{state.running} answers 500")
    return ProbeResult(True, "ok")


def start(state: SimHost) -> None:
    if state.current is not None and not state.crashes_on_start:
        state.running = state.releases[state.current][1]
        state.served = True


def stop(state: SimHost) -> None:
    state.running = None


def switch(world: World, state: SimHost, name: str) -> str | None:
    """Point ``current`` at releases/``name``; the error a real host prints, or None."""
    if name not in state.releases:
        return f"release dir missing: releases/{name}"
    version = state.releases[name][1]
    if version in world.forbidden and world.served_at_start.get(state.name) != version:
        world.violations.append(f"{state.name}: switched to {version}, a version that was rolled back")
    state.current = name
    return None


def survey(state: SimHost) -> str:
    """What :func:`graylift.core.layout.survey_script` prints on this host."""
    lines = [f"current link releases/{state.current}" if state.current else "current none", SURVEY_ORDER]
    lines += [f"release {name} {state.releases[name][0]} {state.releases[name][1]}" for name in state.newest_first]
    return "\n".join(lines)


async def run_script(world: World, host: str, script: str, timeout: float, *, checked: bool = False
                     ) -> CommandResult | None:
    """The answer to ``sh -s`` with ``script`` on stdin; None for a script this shell does not know.

    ``checked``: a command its controller checked its lease for before it was frozen, sent when it was thawed
    (the host's fence let it in: no other controller touched the host since), which is no violation."""
    heads = list(PART.finditer(script))
    if not heads and not (RETRIES.search(script) and PROBE.search(script)):
        return None
    world.scripts += 1  # a freeze waits for it to end (World.point)
    try:
        if heads:
            return CommandResult(0, await _parts(world, host, script, heads, timeout, checked), "")
        return CommandResult(0, await _wait(world, host, script, checked), "")
    finally:
        world.scripts -= 1


async def _parts(world: World, host: str, script: str, heads: list[re.Match[str]], timeout: float,
                 checked: bool) -> str:
    loop = asyncio.get_running_loop()
    out, begun = [], 0
    for head in heads:
        body, begun = script[begun:head.start()], head.end()
        marker, part = head.group(1), head.group(2)
        before = loop.time()
        if not checked:
            world.enter(f"{host}: {part}")
        status, text = await _part(world, host, part, body, timeout, checked)
        await world.point(f"{host}: {part}")
        out.append(f"{text}\n{marker} {part} {status} {before:.2f} {loop.time():.2f}\n")
        if status != 0:
            break
    return "".join(out)


async def _part(world: World, host: str, part: str, body: str, timeout: float, checked: bool
                ) -> tuple[int, str]:
    state, faults = world.hosts[host], world.faults
    if part == "health":
        return 0, await _wait(world, host, body, checked)
    if part == "current":  # read-only: no fault of its own
        expected = CURRENT_IS.search(body)
        if expected is not None and state.current == expected.group(1):
            return 0, ""
        return CURRENT_MOVED_EXIT, f"{CURRENT_MOVED}{f'releases/{state.current}' if state.current else ''}"
    op = {"survey": "survey", "stop": "stop", "switch": "switch", "start": "start"}.get(part)
    if op is None:
        return 127, f"unknown part {part} (simulated)"
    if faults.hangs(op, host):
        await asyncio.sleep(timeout)
        return TIMED_OUT, ""
    if faults.hit(op, host):
        return 1, f"{op} failed (simulated)"
    if op == "survey":
        return 0, survey(state)
    if op == "stop":
        stop(state)
    elif op == "start":
        start(state)
    else:
        found = SWITCH_TO.search(body)
        error = switch(world, state, found.group(1)) if found else "no release dir in the switch (simulated)"
        if error is not None:
            return 2, error
    return 0, ""


async def _wait(world: World, host: str, script: str, checked: bool) -> str:
    """HostWait.script: up to its retries, its interval apart; the last attempt's output and the attempts made."""
    marker = PROBE.findall(script)[0]
    retries = int(RETRIES.findall(script)[0])
    sleep = INTERVAL.search(script)
    interval = float(sleep.group(1)) if sleep else 0.0
    attempt, seen = 0, ProbeResult(False, "not checked")
    while attempt < retries:
        attempt += 1
        if not checked:
            world.enter(f"{host}: health")
        seen = health_of(world, host)
        await world.point(f"{host}: health")
        if seen.ok:
            break
        if attempt < retries:
            await asyncio.sleep(interval)
    return f"{seen.detail}\n{marker} {0 if seen.ok else 1}\n{marker}-attempts {attempt}\n"
