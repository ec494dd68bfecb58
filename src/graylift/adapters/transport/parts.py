"""Several shell scripts as ONE command on a host: in order, stopping at the first that fails, each with its
own exit status, output and seconds (read on the host). One round trip instead of one per script.

The script goes in on stdin (``sh -s``); each part runs in a subshell with stdin from /dev/null (no part reads
the script, and a daemon a part starts holds no pipe of the command) and its stderr joined to its stdout. A
part with a ``timeout`` runs under ``timeout`` (TERM, then KILL): a hung part is stopped on the host, its status
124 (or 137), and the parts after it do not run. After each part the host prints ``<marker> <name> <exit status>
<uptime before> <uptime after>`` on a line of its own (uptime from /proc/uptime, a builtin read: no process;
empty where there is none)::

    >>> print(parts_script([Part("a", "echo one"), Part("b", "false")], "M"))  # doctest: +ELLIPSIS
    { read gl_t0 _ </proc/uptime; } 2>/dev/null || gl_t0=
    ( echo one
    ) </dev/null 2>&1; gl_rc=$?
    { read gl_t1 _ </proc/uptime; } 2>/dev/null || gl_t1=
    printf '\\n%s %s %s %s %s\\n' M a "$gl_rc" "$gl_t0" "$gl_t1"
    [ "$gl_rc" -eq 0 ] || exit 0
    ...
    >>> out = "one\\nM a 0 10.00 10.25\\nno\\nM b 1 10.25 10.50\\n"
    >>> [(r.name, r.exit_status, r.output, r.seconds) for r in read_parts(out, "M")]
    [('a', 0, 'one', 0.25), ('b', 1, 'no', 0.25)]
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from graylift.ports import Transport

TIMED_OUT = (124, 137)
"""Exit statuses of ``timeout`` when it stopped the part (TERM, then KILL ``KILL_AFTER`` seconds later)."""
KILL_AFTER = 5


@dataclass(frozen=True)
class Part:
    name: str  # a plain word: it is printed in the part's status line
    script: str
    timeout: float | None = None  # seconds, on the host (``timeout``, where the host has it)


@dataclass(frozen=True)
class PartResult:
    name: str
    exit_status: int
    output: str  # stdout and stderr, joined
    seconds: float | None  # measured on the host; None where it has no /proc/uptime
    timed_out: bool = False  # stopped by its own timeout


def budget(parts: Sequence[Part], others: float) -> float:
    """The seconds the whole command may take: every part's timeout (and the kill's grace), plus ``others``
    for the parts without one."""
    return sum(p.timeout + KILL_AFTER for p in parts if p.timeout is not None) + others


def _bounded(part: Part) -> str:
    """The part's script, under ``timeout`` where the host has it (else as it is: the whole command's timeout
    still bounds it)."""
    if part.timeout is None:
        return part.script
    script = shlex.quote(part.script)
    return (f"if command -v timeout >/dev/null 2>&1; then exec timeout -k {KILL_AFTER} {part.timeout:g} sh -c "
            f"{script}; else exec sh -c {script}; fi")


def parts_script(parts: Sequence[Part], marker: str) -> str:
    """The host script (see the module docstring)."""
    lines = []
    for part in parts:
        lines += ["{ read gl_t0 _ </proc/uptime; } 2>/dev/null || gl_t0=",
                  f"( {_bounded(part)}\n) </dev/null 2>&1; gl_rc=$?",
                  "{ read gl_t1 _ </proc/uptime; } 2>/dev/null || gl_t1=",
                  f"printf '\\n%s %s %s %s %s\\n' {marker} {shlex.quote(part.name)} \"$gl_rc\" \"$gl_t0\" \"$gl_t1\"",
                  '[ "$gl_rc" -eq 0 ] || exit 0']
    return "\n".join(lines)


def read_parts(stdout: str, marker: str, parts: Sequence[Part] = ()) -> list[PartResult]:
    """The parts that ran, in order, from what :func:`parts_script` printed (``parts``: to tell which ones
    their timeout stopped)."""
    bounded = {p.name for p in parts if p.timeout is not None}
    chunks = stdout.split(f"\n{marker} ")
    results, output = [], chunks[0]
    for chunk in chunks[1:]:
        status, _, rest = chunk.partition("\n")
        fields = status.split(" ")
        if len(fields) != 4 or not fields[1].lstrip("-").isdigit():
            break
        name, code, before, after = fields
        seconds = round(float(after) - float(before), 3) if _number(before) and _number(after) else None
        results.append(PartResult(name, int(code), output, seconds, name in bounded and int(code) in TIMED_OUT))
        output = rest
    return results


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def run_parts(transport: Transport, parts: Sequence[Part], *, timeout: float) -> list[PartResult]:
    """Run ``parts`` as one command on the host; the results of those that ran (all of them, unless one failed:
    then it is the last). Raises the transport's error when the command could not run or timed out."""
    marker = f"graylift-part-{secrets.token_hex(8)}"
    result = await transport.run("sh -s", timeout=timeout, check=False, stdin=parts_script(parts, marker) + "\n")
    return read_parts(result.stdout, marker, parts)
