"""``type: command``: the user's own scripts take a host out of / put it back into any other system.

Contract (docs/traffic.md): ``take_out`` and ``put_back`` exit 0 when done (and must be idempotent);
``verify`` exits 0 and prints on the LAST line of stdout ``out`` (no new traffic reaches the host), ``in``
(the host takes traffic) or anything else (e.g. ``draining``: neither yet). ``in_flight`` (optional) prints an
integer. Placeholders {host} {address} {app} {port} are shell-quoted by graylift, so write them bare.
A non-zero exit or a timeout is a TrafficError naming the command and its last lines of output.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Literal

from pydantic import BeforeValidator

from graylift.adapters._preflight import each, listing
from graylift.adapters.registry import Backend, Build
from graylift.adapters.transport.local import CONTROLLER, LocalTransport
from graylift.core.model import Host
from graylift.core.template import host_values, render
from graylift.errors import CommandTimeout, RemoteCommandFailed, TrafficError, TransportError
from graylift.ports import Preflight, Transport
from graylift.schema import Port, PositiveSeconds, Section, Text, check_text, placeholders

PLACEHOLDERS = frozenset({"host", "address", "app", "port"})
PREFLIGHT_CONCURRENCY = 8  # verify commands run at once during preflight
HookTemplate = Annotated[str, BeforeValidator(check_text), placeholders(PLACEHOLDERS, shell=True)]


class CommandTraffic(Section):
    """The user's own scripts (docs/traffic.md): verify prints ``out`` or ``in`` on its last line."""

    type: Literal["command"] = "command"
    take_out: HookTemplate
    put_back: HookTemplate
    verify: HookTemplate
    in_flight: HookTemplate | None = None
    port: Port | None = None
    run_on: Literal["controller", "host"] = "controller"
    timeout: PositiveSeconds = 60.0
    name: Text | None = None


class CommandSwitch:
    """Runs user commands on the controller (default) or on the host itself (through its transport)."""

    propagation_seconds = 0.0  # the scripts return once their change is in effect

    def __init__(self, cfg: CommandTraffic, *, app: str,
                 connect: Callable[[Host], Awaitable[Transport]] | None = None) -> None:
        """``connect`` reaches the hosts (``run_on: host``)."""
        self.cfg, self.app, self.connect = cfg, app, connect
        self.name = cfg.name or f"command:{app}"
        self._controller = LocalTransport(CONTROLLER)

    @classmethod
    def from_config(cls, cfg: CommandTraffic, build: Build) -> CommandSwitch:
        if cfg.run_on == "host" and build.connect is None:
            raise build.fail("run_on: host needs the release's SSH connector", "run_on")
        return cls(cfg, app=build.app, connect=build.connect if cfg.run_on == "host" else None)

    async def take_out(self, host: Host) -> None:
        await self._run("take_out", self.cfg.take_out, host)

    async def put_back(self, host: Host) -> None:
        await self._run("put_back", self.cfg.put_back, host)

    async def is_out(self, host: Host) -> bool:
        return await self._verify(host) == "out"

    async def is_in(self, host: Host) -> bool:
        return await self._verify(host) == "in"

    async def in_flight(self, host: Host) -> int | None:
        if self.cfg.in_flight is None:
            return None
        out = await self._run("in_flight", self.cfg.in_flight, host)
        last = _last_line(out)
        try:
            return int(last)
        except ValueError:
            raise TrafficError(f"{self.name}: in_flight command for {host.name} printed {last!r}; it must "
                               "print one integer (open requests) on its last line") from None

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """Runs ``verify`` (read-only by contract) for every host, PREFLIGHT_CONCURRENCY at a time."""

        async def verify(host: Host) -> str | TrafficError:
            try:
                return await self._verify(host)
            except TrafficError as exc:
                return exc

        problems, out = [], []
        for host, said in zip(hosts, await each(hosts, verify, PREFLIGHT_CONCURRENCY), strict=True):
            if isinstance(said, TrafficError):
                lines = str(said).splitlines()
                tail = f" (last output: {lines[-1].strip()})" if len(lines) > 1 else ""
                problems.append(f"{lines[0]}{tail}; fix the verify command or the host")
            elif said == "out":
                out.append(host.name)
            elif said != "in":
                problems.append(f"{self.name}: {host.name}: the verify command printed {said!r} on its last line, "
                                "neither 'in' nor 'out'; make it print one of them (docs/traffic.md)")
        notes = [f"{self.name}: verify answered for {len(hosts) - len(problems)} of {len(hosts)} hosts"]
        notes += listing(self.name, "already out", out)
        return Preflight(tuple(problems), tuple(notes))

    async def close(self) -> None:
        await self._controller.close()  # host transports belong to the fleet's connector

    async def _verify(self, host: Host) -> str:
        return _last_line(await self._run("verify", self.cfg.verify, host)).lower()

    def values(self, host: Host) -> dict[str, str]:
        return {**host_values(host), "app": self.app, "port": "" if self.cfg.port is None else str(self.cfg.port)}

    async def _run(self, what: str, template: str, host: Host) -> str:
        command = render(template, self.values(host), quote=True)
        where = "controller" if self.cfg.run_on == "controller" else host.name
        try:
            transport = self._controller if self.connect is None or self.cfg.run_on == "controller" \
                else await self.connect(host)
            result = await transport.run(command, timeout=self.cfg.timeout)
        except CommandTimeout:
            raise TrafficError(f"{self.name}: {what} command for {host.name} timed out after "
                               f"{self.cfg.timeout:g}s on the {where}: {command}") from None
        except RemoteCommandFailed as exc:
            tail = "\n".join("    " + line for line in exc.output.strip().splitlines()[-10:])
            raise TrafficError(f"{self.name}: {what} command for {host.name} failed (exit {exc.exit_status}) "
                               f"on the {where}: {command}" + (f"\n{tail}" if tail else "")) from None
        except TransportError as exc:
            raise TrafficError(f"{self.name}: cannot run the {what} command for {host.name}: {exc}") from exc
        return result.stdout


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


BACKEND = Backend(CommandTraffic, CommandSwitch.from_config)
