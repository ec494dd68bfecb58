"""HAProxy through its runtime API (stats socket): drain, wait for sessions to end, maint; ready, wait UP.

The reads (``show servers state <backend>``, ``show stat <backend id> 4 -1``) are shared: a batch of hosts
polling their servers at once sends one read per poll, not one per host
(:class:`graylift.adapters._limits.SharedReads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BeforeValidator

from graylift.adapters._limits import LoopSemaphores, SharedReads, tick
from graylift.adapters._preflight import every_host, listing, names
from graylift.adapters.registry import Backend, Build
from graylift.core.model import Host
from graylift.core.template import host_values, render
from graylift.deadline import within
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import HostTemplate, Seconds, Section, Text, check_text, fail

# srv_admin_state bits (HAProxy include/haproxy/server-t.h)
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, resolution, hostname maint
ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited drain
OP_RUNNING = 2
SOCKET_TIMEOUT = 5.0
# HAProxy's stats socket accepts few connections at once (its listener's backlog and maxconn); a batch
# of many hosts polls it in parallel, so commands to one socket are queued and a refused connect retried.
SOCKET_CONCURRENCY = 4
CONNECT_ATTEMPTS = 5
_limit = LoopSemaphores(SOCKET_CONCURRENCY)
_reads = SharedReads()  # keyed by (socket, command): every switch on one socket shares its reads


class ServerRow(NamedTuple):
    """A server's row of ``show servers state``: its state bits and its backend's id (for ``show stat``)."""

    admin: int  # srv_admin_state
    op: int  # srv_op_state
    be_id: str


@dataclass(frozen=True)
class ServersState:
    """One ``show servers state <backend>`` answer (version line, ``# be_id be_name srv_id srv_name ...``
    header, one line per server), read once for every server that asks: the backend's lines by server name,
    a row parsed when asked for. A batch's shared read holds every server of the backend (1000 lines at 1000
    hosts) and each poll's few callers parse only their own."""

    columns: dict[str, int]  # header name -> field index
    lines: dict[str, str]  # server name -> its line (of ``backend`` only)
    answer: str

    @classmethod
    def parse(cls, answer: str, backend: str) -> ServersState:
        columns: dict[str, int] = {}
        lines: dict[str, str] = {}
        be_name = srv_name = last = -1
        for line in answer.splitlines():
            if line.startswith("# "):
                columns = {name: index for index, name in enumerate(line[2:].split())}
                be_name, srv_name = columns.get("be_name", -1), columns.get("srv_name", -1)
                last = max(be_name, srv_name) if min(be_name, srv_name) >= 0 else -1
                continue
            if last < 0:
                continue
            fields = line.split(None, last + 1)
            if len(fields) > last and fields[be_name] == backend:
                lines[fields[srv_name]] = line
        return cls(columns, lines, answer)

    def row(self, server: str) -> ServerRow | None:
        """The server's state bits and backend id; None when the backend has no such server (or the answer
        lacks the state columns)."""
        line = self.lines.get(server)
        if line is None:
            return None
        fields = line.split()
        try:
            admin, op = self.columns["srv_admin_state"], self.columns["srv_op_state"]
            return ServerRow(int(fields[admin]), int(fields[op]),
                             fields[self.columns["be_id"]] if "be_id" in self.columns else "")
        except (KeyError, IndexError, ValueError):
            return None


@dataclass(frozen=True)
class StatRows:
    """One ``show stat`` answer: each server's CSV line by (proxy, server), a row parsed when asked for."""

    header: list[str]
    lines: dict[tuple[str, str], str]

    @classmethod
    def parse(cls, answer: str) -> StatRows:
        lines = answer.splitlines()
        if not lines or not lines[0].startswith("# "):
            return cls([], {})
        header = next(csv.reader([lines[0][2:]]))
        index = {}
        for line in lines[1:]:
            proxy, _, rest = line.partition(",")
            index[(proxy, rest.partition(",")[0])] = line
        return cls(header, index)

    def row(self, backend: str, server: str) -> dict[str, str] | None:
        line = self.lines.get((backend, server))
        return None if line is None else dict(zip(self.header, next(csv.reader([line])), strict=False))


def _check_socket(value: str) -> str:
    if value.startswith("/") or re.fullmatch(r"tcp://[^:/\s]+:\d{1,5}", value):
        return value
    raise fail("socket", "must be a unix socket path (/run/...) or tcp://HOST:PORT", value)


class HaproxyTraffic(Section):
    """HAProxy runtime API: set the server to drain, wait for sessions to reach 0, then maint."""

    type: Literal["haproxy"] = "haproxy"
    socket: Annotated[str, BeforeValidator(check_text), AfterValidator(_check_socket)]
    backend: Text
    server: HostTemplate = "{host}"  # the host's server name in the backend
    drain_timeout: Seconds = 30.0


class HaproxySwitch:
    """One HAProxy backend; the host's server name comes from the ``server`` template."""

    propagation_seconds = 0.0  # a load balancer's change is seen at once

    def __init__(self, cfg: HaproxyTraffic, *, poll_interval: float = 0.2, up_timeout: float = 30.0) -> None:
        self.cfg = cfg
        self.poll_interval, self.up_timeout = poll_interval, up_timeout
        self.name = f"haproxy:{cfg.backend}"
        # the backend's id, learnt from `show servers state`: its servers' sessions are read as its rows of
        # `show stat <id> 4 -1` (a name would match a frontend of the same name)
        self._backend_id: str | None = None

    @classmethod
    def from_config(cls, cfg: HaproxyTraffic, build: Build) -> HaproxySwitch:
        return cls(cfg)

    def server(self, host: Host) -> str:
        return render(self.cfg.server, host_values(host))

    async def take_out(self, host: Host) -> None:
        """drain -> wait until current sessions are 0 (or drain_timeout) -> maint. Idempotent."""
        srv = self.server(host)
        admin, _ = await self._state(srv)
        if not admin & ADMIN_MAINT:
            await self._set_state(srv, "drain")
            deadline = time.monotonic() + self.cfg.drain_timeout
            while (await self._scur(srv)) > 0 and time.monotonic() < deadline:
                await tick(self.poll_interval)
            await self._set_state(srv, "maint")
        if not await self.is_out(host):
            raise TrafficError(f"{self.name}: server {self.cfg.backend}/{srv} is not in maintenance after "
                               "'set server ... state maint'")

    async def put_back(self, host: Host) -> None:
        """ready -> wait (up to up_timeout) until HAProxy sees the server UP (health check passing)."""
        srv = self.server(host)
        await self._set_state(srv, "ready")
        deadline = time.monotonic() + self.up_timeout
        while not await self.is_in(host):
            if time.monotonic() >= deadline:
                row = await self._stat_row(srv)  # one read for both fields
                status, check = row.get("status") or "", row.get("check_status") or ""
                raise TrafficError(f"{self.name}: server {self.cfg.backend}/{srv} is ready but not UP after "
                                   f"{self.up_timeout:g}s (status {status}, last check {check or 'none'}); "
                                   "is the app answering HAProxy's health check?")
            await tick(self.poll_interval)

    async def is_out(self, host: Host) -> bool:
        admin, _ = await self._state(self.server(host))
        return bool(admin & (ADMIN_MAINT | ADMIN_DRAIN))

    async def is_in(self, host: Host) -> bool:
        admin, op = await self._state(self.server(host))
        return not admin & (ADMIN_MAINT | ADMIN_DRAIN) and op == OP_RUNNING

    async def in_flight(self, host: Host) -> int | None:
        return await self._scur(self.server(host))

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """Two reads for all hosts: the socket's level and ONE ``show servers state <backend>``."""
        try:
            level = (await self.command("show cli level")).strip()
            answer = await self.command(f"show servers state {self.cfg.backend}")
        except TrafficError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        servers = ServersState.parse(answer, self.cfg.backend)
        if not servers.lines:
            return Preflight(problems=(f"{self.name}: every host: HAProxy has no backend {self.cfg.backend} with "
                                       f"servers ({answer.strip() or 'empty answer'}); check the backend name",))
        problems = []
        if level in ("operator", "user"):
            problems.append(f"{self.name}: every host: the socket {self.cfg.socket} is at level {level}; graylift sets "
                            "server states, so use 'stats socket ... level admin'")
        out, down = [], []
        for host in hosts:
            srv = self.server(host)
            row = servers.row(srv)
            if row is None:
                problems.append(f"{self.name}: {host.name}: HAProxy has no server {self.cfg.backend}/{srv}; add it to "
                                "the haproxy config or fix the 'server' template in graylift's config")
                continue
            admin, op = row.admin, row.op
            if admin & (ADMIN_MAINT | ADMIN_DRAIN):
                out.append(host.name)
            elif op != OP_RUNNING:
                down.append(host.name)
        notes = [f"{self.name}: {len(hosts) - len(out) - len(down)} of {len(hosts)} hosts in and UP"]
        notes += listing(self.name, "already in maint or drain", out)
        if down:
            notes.append(f"{self.name}: not UP (health check failing): {names(down)}")
        return Preflight(tuple(problems), tuple(notes))

    async def close(self) -> None:
        return None  # one connection per command: nothing stays open

    # runtime API -------------------------------------------------------------------------------

    async def command(self, line: str) -> str:
        """Send one runtime API command on a fresh connection; return the whole answer.

        At most SOCKET_CONCURRENCY commands per socket run at once; a refused connect is retried.
        """
        async with _limit(self.cfg.socket):
            for attempt in range(1, CONNECT_ATTEMPTS + 1):
                try:
                    return await self._command_once(line)
                except TrafficError as exc:
                    if attempt == CONNECT_ATTEMPTS or not isinstance(exc.__cause__, OSError):
                        raise
                    await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _command_once(self, line: str) -> str:
        try:
            if self.cfg.socket.startswith("tcp://"):
                address, _, port = self.cfg.socket[len("tcp://"):].rpartition(":")
                opening = asyncio.open_connection(address, int(port))
            else:
                opening = asyncio.open_unix_connection(self.cfg.socket)
            reader, writer = await within(opening, SOCKET_TIMEOUT)
            try:
                writer.write(line.encode() + b"\n")
                await writer.drain()
                data = await within(reader.read(), SOCKET_TIMEOUT)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        except (OSError, TimeoutError, ValueError) as exc:
            raise TrafficError(f"{self.name}: cannot talk to the HAProxy runtime API at {self.cfg.socket} "
                               f"({exc or type(exc).__name__}); is HAProxy running with "
                               "'stats socket ... level admin'?") from exc
        return data.decode("utf-8", "replace")

    def _unknown(self, srv: str, answer: str) -> TrafficError:
        return TrafficError(f"{self.name}: HAProxy does not know server {self.cfg.backend}/{srv} "
                            f"({answer.strip() or 'not listed'}); check the haproxy config (backend and "
                            "server names) and the 'server' template in graylift's config")

    async def _set_state(self, srv: str, state: str) -> None:
        answer = await self.command(f"set server {self.cfg.backend}/{srv} state {state}")
        if answer.strip():
            if "No such" in answer or "not found" in answer.lower():
                raise self._unknown(srv, answer)
            raise TrafficError(f"{self.name}: 'set server {self.cfg.backend}/{srv} state {state}' was refused: "
                               f"{answer.strip()}")

    async def _read(self, line: str, parse: Callable[[str], Any]) -> Any:
        """A read-only command's parsed answer, shared with the other callers waiting at once."""

        async def fetch() -> Any:
            return parse(await self.command(line))

        return await _reads.read((self.cfg.socket, line), fetch)

    async def _state(self, srv: str) -> tuple[int, int]:
        """(srv_admin_state, srv_op_state) from ``show servers state <backend>``."""
        backend = self.cfg.backend
        state: ServersState = await self._read(f"show servers state {backend}",
                                               lambda answer: ServersState.parse(answer, backend))
        row = state.row(srv)
        if row is None:
            raise self._unknown(srv, "" if state.lines else state.answer)
        self._backend_id = row.be_id
        return row.admin, row.op

    async def _stat_row(self, srv: str) -> dict[str, str]:
        """The server's row of ``show stat``: from its backend's rows (by the backend's id; an id a reload
        changed is learnt again); while the id is unknown, or points at another proxy, from the whole dump."""
        if self._backend_id is None:
            await self._state(srv)
        rows: StatRows = await self._read(f"show stat {self._backend_id} 4 -1", StatRows.parse)
        row = rows.row(self.cfg.backend, srv)
        if row is None:  # the id moved (HAProxy reloaded with other proxies): read the whole dump
            self._backend_id = None
            row = (await self._read("show stat", StatRows.parse)).row(self.cfg.backend, srv)
        if row is None:
            raise self._unknown(srv, "")
        return row

    async def _stat_field(self, srv: str, field: str) -> str:
        return (await self._stat_row(srv)).get(field) or ""

    async def _scur(self, srv: str) -> int:
        value = await self._stat_field(srv, "scur")
        try:
            return int(value)
        except ValueError:
            return 0


BACKEND = Backend(HaproxyTraffic, HaproxySwitch.from_config)
