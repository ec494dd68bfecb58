"""A Silencer that runs site-specific commands on the controller (for monitoring without an adapter).

Contract (templates as graylift.core.template has them; every value is shell-quoted):
  placeholders  {host} {address} {reason} {until} (ISO 8601 UTC, e.g. 2025-05-01T12:00:00Z) {until_epoch}
  mute_command  must use {until} or {until_epoch}: a silence always ends by itself. Exit 0 = muted;
                the first line of stdout, if any, is the silence id (else "command:<host>:<reason>").
                It must be idempotent (muting twice for the same host and reason keeps one silence).
  unmute_command  exit 0 = no silence of this reason left for the host (also when there was none).
  check_command   exit 0 = muted, exit 1 = not muted, anything else = error.
Non-zero exits (other than check's 1) and timeouts raise SilencerError with the exit code and the
last lines of output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator

from graylift.adapters._preflight import each
from graylift.adapters.registry import Backend, Build
from graylift.core.model import Host
from graylift.core.template import host_values, render
from graylift.deadline import within
from graylift.errors import SilencerError
from graylift.ports import Preflight
from graylift.schema import PlainName, PositiveSeconds, Section, check_text, placeholders, uses_placeholder

PLACEHOLDERS = frozenset({"host", "address", "reason", "until", "until_epoch"})
PREFLIGHT_REASON = "graylift-preflight"
PREFLIGHT_CONCURRENCY = 8
SilenceTemplate = Annotated[str, BeforeValidator(check_text), placeholders(PLACEHOLDERS, shell=True)]


class CommandMonitoring(Section):
    """Site-specific mute/unmute/check commands on the controller (docs/registries.md)."""

    type: Literal["command"] = "command"
    mute_command: Annotated[SilenceTemplate, uses_placeholder(frozenset({"until", "until_epoch"}),
                                                              "{until} or {until_epoch} so a silence lapses "
                                                              "by itself")]
    unmute_command: SilenceTemplate
    check_command: SilenceTemplate
    timeout: PositiveSeconds = 60.0
    name: PlainName = "command"
    silence_minutes: PositiveSeconds = 30.0


class CommandSilencer:
    def __init__(self, cfg: CommandMonitoring) -> None:
        self.cfg = cfg
        self.name = f"command:{cfg.name}"

    @classmethod
    def from_config(cls, cfg: CommandMonitoring, build: Build) -> CommandSilencer:
        return cls(cfg)

    def render(self, template: str, host: Host, reason: str, until: datetime | None = None) -> str:
        values = {**host_values(host), "reason": reason, "until": "", "until_epoch": ""}
        if until is not None:
            end = until if until.tzinfo else until.replace(tzinfo=UTC)
            values["until"] = end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            values["until_epoch"] = str(int(end.timestamp()))
        return render(template, values, quote=True)

    async def mute(self, host: Host, *, until: datetime, reason: str) -> str:
        end = until if until.tzinfo else until.replace(tzinfo=UTC)
        if end <= datetime.now(UTC):
            raise SilencerError(f"{self.name}: silence end {end.isoformat()} for {host.name} is not in the future")
        status, out = await self._run(self.render(self.cfg.mute_command, host, reason, end), host)
        if status != 0:
            raise self._failed("mute_command", status, out, host)
        first = out.strip().splitlines()[0].strip() if out.strip() else ""
        return first or f"command:{host.name}:{reason}"

    async def unmute(self, host: Host, *, reason: str, silence_id: str | None = None) -> None:
        status, out = await self._run(self.render(self.cfg.unmute_command, host, reason), host)
        if status != 0:
            raise self._failed("unmute_command", status, out, host)

    async def is_muted(self, host: Host, *, reason: str) -> bool:
        status, out = await self._run(self.render(self.cfg.check_command, host, reason), host)
        if status in (0, 1):
            return status == 0
        raise self._failed("check_command", status, out, host)

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """Runs ``check_command`` (read-only by contract) for every host with the reason ``graylift-preflight``;
        exit 0 or 1 means the monitoring system answered. PREFLIGHT_CONCURRENCY at a time."""

        async def check(host: Host) -> str | None:
            try:
                status, out = await self._run(self.render(self.cfg.check_command, host, PREFLIGHT_REASON), host)
            except SilencerError as exc:  # a timeout: one line naming the command
                return f"{exc}; fix the check_command or the monitoring system"
            if status in (0, 1):
                return None
            said = out.strip().splitlines()[-1].strip() if out.strip() else ""
            return (f"{self.name}: {host.name}: check_command exited {status}" + (f" ({said})" if said else "")
                    + "; it must exit 0 (muted) or 1 (not muted): fix it or the monitoring system")

        problems = tuple(p for p in await each(hosts, check, PREFLIGHT_CONCURRENCY) if p is not None)
        return Preflight(problems, (f"{self.name}: check_command answered for {len(hosts) - len(problems)} of "
                                    f"{len(hosts)} hosts",))

    async def close(self) -> None:
        return None  # every command is its own process

    async def _run(self, command: str, host: Host) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_shell(command, stdin=asyncio.subprocess.DEVNULL,
                                                     stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = await within(proc.communicate(), self.cfg.timeout)
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the shell and everything it started
            await proc.wait()
            raise SilencerError(f"{self.name}: command for {host.name} timed out after {self.cfg.timeout:g}s: "
                                f"{command}") from exc
        return int(proc.returncode or 0), out.decode(errors="replace")

    def _failed(self, field: str, status: int, out: str, host: Host) -> SilencerError:
        tail = "\n".join(out.strip().splitlines()[-5:])
        return SilencerError(f"{self.name}: {field} for {host.name} exited {status}"
                             + (f":\n    {tail}" if tail else "") + f"; check the {field} script")


BACKEND = Backend(CommandMonitoring, CommandSilencer.from_config)
