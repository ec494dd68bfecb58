"""Health probes that run on the host through its Transport (so 127.0.0.1 is the host's own), and the
``health`` section of an app's config they are made from (:func:`probes_from_config`).

A probe never raises for an unhealthy app: it returns ProbeResult(ok=False, detail=what it saw).
HostUnreachable (and other transport failures) propagate: the host, not the app, is the problem.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, model_validator

from graylift.errors import CommandTimeout
from graylift.ports import CommandResult, HealthProbe, ProbeResult, Transport
from graylift.schema import (
    COMMAND_PLACEHOLDERS,
    CommandTemplate,
    Flag,
    HttpUrl,
    Port,
    PositiveInt,
    PositiveSeconds,
    Seconds,
    Section,
    Text,
    fail,
    is_int,
    placeholders,
    render_command,
    render_template,
)

_HOSTNAME = re.compile(r"^[A-Za-z0-9.:-]+$")
NL = "\n"  # a newline inside a shell word (a pattern in ${x%...})


def _check_status(value: Any) -> Any:
    if not is_int(value) or not 100 <= value <= 599:
        raise fail("status", "must be an HTTP status from 100 to 599", value)
    return value


class HttpCheckConfig(Section):
    url: Annotated[HttpUrl, placeholders(COMMAND_PLACEHOLDERS)]
    status: Annotated[int, BeforeValidator(_check_status)] = 200
    body: str | None = None


class HealthConfig(Section):
    """The app's probes. Without any, ``none: true`` must say so: precheck, health and bake then check nothing."""

    process: Annotated[Text, placeholders(COMMAND_PLACEHOLDERS)] | None = None
    tcp_port: Port | None = None
    http: HttpCheckConfig | None = None
    command: CommandTemplate | None = None
    retries: PositiveInt = 60
    interval: Seconds = 0.5
    timeout: PositiveSeconds = 5.0
    none: Flag = False

    def probes(self) -> list[str]:
        """The names of the probes given."""
        given = {"process": self.process, "tcp_port": self.tcp_port, "http": self.http, "command": self.command}
        return [name for name, value in given.items() if value is not None]

    @model_validator(mode="after")
    def _none_or_probes(self) -> HealthConfig:
        given = self.probes()
        if self.none and given:
            raise ValueError(f"none: true means no health check, but {', '.join(given)} "
                             f"{'is' if len(given) == 1 else 'are'} given; keep one or the other "
                             "(in an env override, set the probes to null)")
        return self


async def _run(transport: Transport, command: str, timeout: float, stdin: str | None = None
               ) -> CommandResult | None:
    """The probe command's result, whatever its exit status; None when it timed out."""
    try:
        return await transport.run(command, timeout=timeout, check=False, stdin=stdin)
    except CommandTimeout:
        return None


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _self_proof(pattern: str) -> str:
    """Rewrite a pgrep regex so it does not match the probe's own command line: 'app' -> '[a]pp'."""
    anchor = "^" if pattern.startswith("^") else ""
    rest = pattern[len(anchor):]
    if rest and (rest[0].isalnum() or rest[0] in "/_=@:,%"):
        return f"{anchor}[{rest[0]}]{rest[1:]}"
    return pattern


class ShellProbe:
    """A probe that is one shell command on the host and a reading of its result: ``command``, ``timeout``
    (how long it may take there) and :meth:`read` (None: it timed out). :func:`check_all` runs several in one
    SSH command."""

    name: str
    command: str
    timeout: float

    @property
    def in_script(self) -> str:
        """The command as a line of a script the host reads on stdin (:class:`HostWait`): :attr:`command`."""
        return self.command

    async def check(self, transport: Transport) -> ProbeResult:
        return self.read(await _run(transport, self.command, self.timeout))

    def read(self, result: CommandResult | None) -> ProbeResult:
        raise NotImplementedError


class ProcessProbe(ShellProbe):
    """A process whose full command line matches ``pattern`` (pgrep -f regex) is running."""

    def __init__(self, pattern: str, timeout: float = 5.0) -> None:
        self.pattern = pattern
        self.timeout = timeout
        self.name = f"process:{pattern}"
        # -A (procps >= 4) skips our ancestors; older pgrep rejects it (exit 2) and the self-proof
        # pattern does the same job (exec: the shell holding the first pattern is gone by then).
        pat = shlex.quote(self.pattern)
        proof = shlex.quote(_self_proof(self.pattern))
        self.command = (f"pgrep -A -f -- {pat} 2>/dev/null; rc=$?; "
                        f"if [ $rc -eq 2 ]; then exec pgrep -f -- {proof}; fi; exit $rc")

    @property
    def in_script(self) -> str:
        """In a script read on stdin (every wait and fused command) no process of ours carries the pattern in its
        command line, and pgrep never matches itself: plain ``pgrep -f``. -A reads /proc many times over: with 690
        processes one attempt took 355 ms, against 45 ms without (bench/probe_cost.py)."""
        return f"pgrep -f -- {shlex.quote(self.pattern)}"

    def read(self, result: CommandResult | None) -> ProbeResult:
        if result is None:
            return ProbeResult(False, f"pgrep for {self.pattern!r} timed out after {self.timeout:g}s")
        pids = result.stdout.split()
        if result.exit_status == 0 and pids:
            return ProbeResult(True, f"process matching {self.pattern!r} running (pid {', '.join(pids)})")
        if result.exit_status == 1:
            return ProbeResult(False, f"no process matches {self.pattern!r}")
        return ProbeResult(False, f"pgrep -f {self.pattern!r} failed (exit {result.exit_status}): "
                           f"{_tail(result.stdout + result.stderr)}")


class TcpProbe(ShellProbe):
    """Something on the host accepts TCP connections on host:port."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> None:
        if not 0 < int(port) < 65536 or not _HOSTNAME.match(host):
            raise ValueError(f"bad TCP probe target {host}:{port}")
        self.port, self.host, self.limit = int(port), host, timeout
        self.timeout = timeout + 5
        self.name = f"tcp:{host}:{port}"
        t = f"{timeout:g}"
        py = f"import socket; socket.create_connection(({self.host!r}, {self.port}), {t}).close()"
        script = f": < /dev/tcp/{self.host}/{self.port}"
        self.command = (f"if command -v bash >/dev/null 2>&1; then timeout {t} bash -c {shlex.quote(script)}; "
                        f"else timeout {t} python3 -c {shlex.quote(py)}; fi")

    def read(self, result: CommandResult | None) -> ProbeResult:
        t = f"{self.limit:g}"
        if result is None:
            return ProbeResult(False, f"connect to {self.host}:{self.port} timed out")
        if result.ok:
            return ProbeResult(True, f"{self.host}:{self.port} accepts connections")
        seen = _tail(result.stderr + result.stdout) or f"exit {result.exit_status}"
        if result.exit_status == 124:
            seen = f"no answer within {t}s"
        return ProbeResult(False, f"{self.host}:{self.port} does not accept connections ({seen})")


class HttpProbe(ShellProbe):
    """GET ``url`` from the host itself with curl: status must match, body must contain ``body``.

    The host decides too (exit 0 only for the right status and body), so a wait on the host
    (:func:`wait_on_host`) knows when to stop; :meth:`read` says what was wrong from the output.
    """

    def __init__(self, url: str, status: int = 200, body: str | None = None, timeout: float = 5.0) -> None:
        self.url, self.status, self.body, self.limit = url, int(status), body, timeout
        self.timeout = timeout + 5
        self.name = f"http:{url}"
        # curl's messages go to stdout too (--stderr -), before the status line that -w writes last
        lines = [f"out=$(curl -sS --stderr - --noproxy '*' --max-time {timeout:g} -o - -w '\\n%{{http_code}}' "
                 f"-- {shlex.quote(self.url)}); rc=$?",
                 'printf %s "$out"',
                 '[ "$rc" -eq 0 ] || exit "$rc"',
                 f'[ "${{out##*{NL}}}" = {self.status} ] || exit 1']
        if body is not None:
            lines.append(f'case "${{out%{NL}*}}" in *{shlex.quote(body)}*) ;; *) exit 1;; esac')
        self.command = "\n".join(lines)

    def read(self, result: CommandResult | None) -> ProbeResult:
        if result is None:
            return ProbeResult(False, f"GET {self.url} timed out after {self.limit:g}s")
        if result.exit_status == 127:
            return ProbeResult(False, "curl is not installed on the host")
        body, _, code = result.stdout.rpartition("\n")
        if result.exit_status not in (0, 1) or not (len(code) == 3 and code.isdigit()) or code == "000":
            seen = _tail(body + result.stderr) or f"curl exit {result.exit_status}"
            return ProbeResult(False, f"GET {self.url} failed: {seen}")
        if code != str(self.status):
            return ProbeResult(False, f"GET {self.url} returned {code}, expected {self.status}: "
                               f"{body[:200]!r}")
        if self.body is not None and self.body not in body:
            return ProbeResult(False, f"GET {self.url} returned {code} but the body lacks {self.body!r}: "
                               f"{body[:200]!r}")
        return ProbeResult(True, f"GET {self.url} returned {code}")


class CommandProbe(ShellProbe):
    """A shell command on the host exits 0."""

    def __init__(self, command: str, timeout: float = 5.0) -> None:
        self.command, self.timeout = command, timeout
        self.name = f"command:{command}"

    def read(self, result: CommandResult | None) -> ProbeResult:
        if result is None:
            return ProbeResult(False, f"{self.command!r} timed out after {self.timeout:g}s")
        output = _tail(result.stdout + result.stderr)
        if result.ok:
            return ProbeResult(True, f"{self.command!r} exited 0" + (f": {output}" if output else ""))
        seen = f": {output}" if output else ""
        return ProbeResult(False, f"{self.command!r} exited {result.exit_status}{seen}")


def on_the_host(probes: Sequence[HealthProbe]) -> bool:
    """Whether ``probes`` can run as one script on the host: there is one, and every one is a shell probe."""
    return bool(probes) and all(isinstance(p, ShellProbe) for p in probes)


async def check_all(probes: Sequence[HealthProbe], transport: Transport) -> ProbeResult:
    """Every probe in order; the first failure is the result ("<probe>: <what it saw>").

    Shell probes run together, in ONE command on the host that stops at the first failing one: a health
    check is one SSH round trip, however many probes the app has (three round trips per attempt before).
    Any other probe (a fake, one behind the lease) is checked on its own.
    """
    if len(probes) > 1 and on_the_host(probes):
        waited = await wait_on_host(probes, transport, retries=1, interval=0)
        assert waited is not None
        return waited[1]
    for one in probes:
        seen = await one.check(transport)
        if not seen.ok:
            return ProbeResult(False, f"{one.name}: {seen.detail}")
    return ProbeResult(True, "all probes pass" if probes else "no health checks configured")


async def wait_on_host(probes: Sequence[HealthProbe], transport: Transport, *, retries: int, interval: float
                       ) -> tuple[int, ProbeResult] | None:
    """Check the probes on the host up to ``retries`` times, ``interval`` seconds apart, in ONE command that
    returns as soon as they all pass: (attempts made, the last attempt's result). None when a probe is not a
    shell probe (then the caller checks attempt by attempt).

    The script goes in on stdin (``sh -s``), so no process on the host carries a probe's text in its command
    line (a pgrep pattern would match it); each probe's stdin is /dev/null, so none reads the script. A
    command probe runs in the user's shell under ``timeout`` (exit 124: it timed out).
    """
    wait = HostWait.of(probes, retries=retries, interval=interval)
    if wait is None:
        return None
    result = await _run(transport, "sh -s", wait.budget, stdin=wait.script)
    if result is None:
        return retries, wait.probes[0].read(None)
    return wait.read(result)


@dataclass(frozen=True)
class HostWait:
    """The wait of :func:`wait_on_host` as a script, alone or as a part of a longer host command
    (:mod:`graylift.adapters.transport.parts`): up to ``retries`` attempts, ``interval`` seconds apart, each
    running the probes in order and stopping at the first failing one. The script ends with exit 0 and a line
    ``<marker>-attempts <n>`` after the last attempt's output (each probe's followed by ``<marker> <rc>``);
    :meth:`read` reads that."""

    probes: tuple[ShellProbe, ...]
    retries: int
    interval: float
    marker: str = field(default_factory=lambda: f"graylift-probe-{secrets.token_hex(8)}")

    @classmethod
    def of(cls, probes: Sequence[HealthProbe], *, retries: int, interval: float) -> HostWait | None:
        """The wait for ``probes``; None unless they can run on the host (:func:`on_the_host`)."""
        if not on_the_host(probes):
            return None
        return cls(tuple(p for p in probes if isinstance(p, ShellProbe)), retries, interval)

    @property
    def budget(self) -> float:
        """Seconds the script may take at most (every attempt timing out, and 5 more)."""
        return self.retries * (sum(p.timeout for p in self.probes) + max(self.interval, 0)) + 5

    @property
    def script(self) -> str:
        marker = self.marker
        lines = ["attempt() {"]
        for probe in self.probes:
            command = probe.in_script
            if isinstance(probe, CommandProbe):
                command = f'timeout -k 1 {probe.timeout:g} "${{SHELL:-/bin/sh}}" -c {shlex.quote(command)}'
            lines.append(f"( {command}\n) </dev/null 2>&1; rc=$?; printf '\\n{marker} %s\\n' \"$rc\"; "
                         '[ "$rc" -eq 0 ] || return 1')
        lines += ["}", "i=0", "while :; do",
                  "  i=$((i+1)); out=$(attempt); passed=$?",
                  f'  if [ "$passed" -eq 0 ] || [ "$i" -ge {int(self.retries)} ]; then',
                  f"    printf '%s\\n{marker}-attempts %s\\n' \"$out\" \"$i\"; exit 0",
                  "  fi",
                  f"  sleep {max(self.interval, 0):g}",
                  "done"]
        return "\n".join(lines) + "\n"

    def read(self, result: CommandResult) -> tuple[int, ProbeResult]:
        """(attempts made, the last attempt's result) from what the script printed."""
        shell, marker = self.probes, self.marker
        text, _, attempts = result.stdout.rpartition(f"\n{marker}-attempts ")
        if not attempts.strip().isdigit():  # the shell itself failed (no sh?): what it said, as the first probe's
            seen = shell[0].read(CommandResult(result.exit_status or 1, result.stdout, result.stderr))
            return 1, ProbeResult(False, f"{shell[0].name}: {seen.detail}")
        chunks = text.split(f"\n{marker} ")
        output = chunks[0]
        for probe, chunk in zip(shell, chunks[1:], strict=False):
            status, _, rest = chunk.partition("\n")
            timed_out = isinstance(probe, CommandProbe) and status == "124"
            seen = probe.read(None if timed_out else CommandResult(int(status), output, ""))
            if not seen.ok:
                return int(attempts), ProbeResult(False, f"{probe.name}: {seen.detail}")
            output = rest
        if len(chunks) - 1 < len(shell):
            return int(attempts), ProbeResult(False, f"{shell[len(chunks) - 1].name}: the probes' shell stopped "
                                                     "before it")
        return int(attempts), ProbeResult(True, "all probes pass")


def probes_from_config(health: HealthConfig, values: Mapping[str, str]) -> list[HealthProbe]:
    """The probes of one host: placeholders filled with that host's values (``{host}``, ``{address}``,
    ``{version}``, paths); ``command`` values shell-quoted."""
    found: list[HealthProbe] = []
    if health.process:
        found.append(ProcessProbe(render_template(health.process, values), timeout=health.timeout))
    if health.tcp_port:
        found.append(TcpProbe(health.tcp_port, timeout=health.timeout))
    if health.http:
        found.append(HttpProbe(render_template(str(health.http.url), values), status=health.http.status,
                               body=health.http.body, timeout=health.timeout))
    if health.command:
        found.append(CommandProbe(render_command(health.command, values), timeout=health.timeout))
    return found
