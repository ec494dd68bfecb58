"""Open-source nginx: toggle ``down`` on the host's ``server`` line of an upstream include, test, reload.

The include file is the source of truth: graylift never re-renders the whole upstream from its own host
list, it only adds or removes the ``down`` flag on the one ``server <address>:<port>`` line of the host,
so weights, other parameters, comments and servers graylift does not know stay exactly as written.
A missing include can be seeded from ``hosts`` (``render_upstream``).

Each edit runs as ONE shell script on the LB host, under ``flock`` on ``<include>.graylift.lock``:
compare-and-swap on the file's sha256 (another controller edited it meanwhile -> retry), write a temp
file and rename it over the include, ``nginx -t``; on failure restore the previous file and fail with
nginx's own message; else ``nginx -s reload`` and record the loaded file's sha256 in
``<include>.graylift.loaded``. Verification reads the file and that marker back: a host is out only when
its line says ``down`` *and* that file is the one nginx reloaded, so a crash between rename and reload
is repaired by the next (idempotent) call instead of being mistaken for done.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import shlex
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from graylift.core.model import Host
from graylift.errors import TrafficError, TransportError
from graylift.ports import Transport

TransportFactory = Callable[[], Awaitable[Transport]]

MISSING = "missing"
CHANGED_EXIT = 75  # the include changed between our read and our write: read again
TEST_FAILED_EXIT = 76  # nginx -t refused the new file (restored)
RELOAD_FAILED_EXIT = 77
LOCK_EXIT = 78
CAS_RETRIES = 5
COMMAND_TIMEOUT = 60.0
LOCK_WAIT = 30
_READ_SEPARATOR = "\n#--graylift-loaded--\n"

_SERVER_LINE = re.compile(r"^(?P<indent>\s*)server\s+(?P<address>[^\s;]+)(?P<params>[^;#]*);(?P<rest>.*)$")
_UPSTREAM_LINE = re.compile(r"^\s*upstream\s+(?P<name>[^\s{]+)\s*\{\s*(#.*)?$")

# One lock per (event loop, LB host, include path): the parallel take-outs of one batch edit one file in turn.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int, str], asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


def _edit_lock(host: Host, path: str) -> asyncio.Lock:
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault((host.address, host.port, path), asyncio.Lock())


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def render_upstream(upstream: str, hosts: Sequence[Host], port: int, *, server_params: str = "",
                    keepalive: int | None = None, down: frozenset[str] = frozenset()) -> str:
    """The include graylift seeds when none exists: one ``server`` line per host (by address)."""
    params = f" {server_params.strip()}" if server_params.strip() else ""
    lines = ["# managed by graylift: one server per line; graylift only toggles 'down'",
             f"upstream {upstream} {{"]
    for host in hosts:
        flag = " down" if host.name in down else ""
        lines.append(f"    server {host.address}:{port}{params}{flag};")
    if keepalive:
        lines.append(f"    keepalive {keepalive};")
    lines.append("}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ServerLine:
    index: int  # line number (0-based) in the file
    address: str
    down: bool


def find_server(text: str, upstream: str, addresses: Sequence[str]) -> ServerLine | None:
    """The first ``server`` line for one of ``addresses`` inside ``upstream <name> { ... }``.

    Raises ValueError when the upstream block is not in the text.
    """
    inside = False
    found_block = False
    for index, line in enumerate(text.splitlines()):
        if not inside:
            match = _UPSTREAM_LINE.match(line)
            if match and match.group("name") == upstream:
                inside = found_block = True
            continue
        if line.strip().startswith("}"):
            inside = False
            continue
        server = _SERVER_LINE.match(line)
        if server and server.group("address") in addresses:
            return ServerLine(index, server.group("address"), "down" in server.group("params").split())
    if not found_block:
        raise ValueError(f"no 'upstream {upstream} {{' line (one block, opening brace on its line)")
    return None


def toggle_down(text: str, line: ServerLine, down: bool) -> str:
    """The text with the ``down`` flag of one server line set or cleared, everything else untouched."""
    lines = text.splitlines(keepends=True)
    raw = lines[line.index]
    ending = raw[len(raw.rstrip("\r\n")):]
    match = _SERVER_LINE.match(raw.rstrip("\r\n"))
    assert match is not None
    params = [p for p in match.group("params").split() if p != "down"]
    if down:
        params.append("down")
    joined = "".join(" " + p for p in params)
    lines[line.index] = (f"{match.group('indent')}server {match.group('address')}{joined};"
                         f"{match.group('rest')}{ending}")
    return "".join(lines)


class NginxSwitch:
    """One upstream of one nginx (local or over SSH); several nginx LBs are several switches."""

    def __init__(self, *, transport_factory: TransportFactory, include_path: str, upstream: str, port: int,
                 hosts: Sequence[Host] | None = None, server_params: str = "", keepalive: int | None = None,
                 nginx_bin: str = "nginx", nginx_conf: str | None = None, nginx_globals: str | None = None,
                 reload_settle: float = 0.5, name: str | None = None) -> None:
        self.transport_factory = transport_factory
        self.include_path = include_path
        self.upstream = upstream
        self.port = port
        self.hosts = list(hosts) if hosts is not None else None
        self.server_params = server_params
        self.keepalive = keepalive
        self.nginx_bin = nginx_bin
        self.nginx_conf = nginx_conf
        self.nginx_globals = nginx_globals
        self.reload_settle = reload_settle
        self.name = name or f"nginx:{upstream}"
        self._transport: Transport | None = None

    # TrafficSwitch ------------------------------------------------------------------------------

    async def take_out(self, host: Host) -> None:
        """Mark the host's server ``down``, test, reload. Idempotent (no reload when already loaded)."""
        await self._set_down(host, True)

    async def put_back(self, host: Host) -> None:
        await self._set_down(host, False)

    async def is_out(self, host: Host) -> bool:
        down, loaded = await self._loaded_state(host)
        return down and loaded

    async def is_in(self, host: Host) -> bool:
        down, loaded = await self._loaded_state(host)
        return not down and loaded

    async def in_flight(self, host: Host) -> int | None:
        return None  # open-source nginx has no per-server counters

    async def close(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()

    # internals -------------------------------------------------------------------------------------

    async def _loaded_state(self, host: Host) -> tuple[bool, bool]:
        """(the host's line says down, the file is the one nginx last reloaded).

        Read under the edit lock: a parallel edit renames the file before it reloads nginx, and a read in
        between would see a file that is not loaded yet.
        """
        transport = await self._connect()
        async with _edit_lock(transport.host, self.include_path):
            text, loaded = await self._read()
        line = self._line(host, text)
        return line.down, text is not None and loaded == sha256_text(text)

    def _addresses(self, host: Host) -> list[str]:
        return [f"{host.address}:{self.port}", f"{host.name}:{self.port}"]

    def _line(self, host: Host, text: str | None) -> ServerLine:
        where = f"{self.name}: {self._where()}"
        if text is None:
            raise TrafficError(f"{where} does not exist; create it (an 'upstream {self.upstream} {{ ... }}' "
                               "block with one 'server address:port;' line per host) or configure 'hosts' "
                               "so graylift seeds it")
        try:
            line = find_server(text, self.upstream, self._addresses(host))
        except ValueError as exc:
            raise TrafficError(f"{where}: {exc}; fix the include file") from None
        if line is None:
            raise TrafficError(f"{where}: upstream {self.upstream} has no "
                               f"'server {host.address}:{self.port}' line for host {host.name}; add it "
                               "(graylift only toggles 'down', it never "
                               "adds or removes servers)")
        return line

    def _where(self) -> str:
        transport_host = self._transport.host.name if self._transport is not None else "?"
        return f"{self.include_path} on {transport_host}"

    async def _connect(self) -> Transport:
        if self._transport is None:
            try:
                self._transport = await self.transport_factory()
            except TransportError as exc:
                raise TrafficError(f"{self.name}: cannot reach the nginx host: {exc}") from exc
        return self._transport

    async def _run(self, script: str, *, check: bool) -> tuple[int, str, str]:
        transport = await self._connect()
        try:
            result = await transport.run("sh -c " + shlex.quote(script), timeout=COMMAND_TIMEOUT, check=check)
        except TransportError as exc:
            raise TrafficError(f"{self.name}: {exc}") from exc
        return result.exit_status, result.stdout, result.stderr

    async def _read(self) -> tuple[str | None, str]:
        """(include text or None when missing, sha256 recorded at the last successful reload or '')."""
        f = shlex.quote(self.include_path)
        marker = shlex.quote(self.include_path + ".graylift.loaded")
        sep = shlex.quote(_READ_SEPARATOR)
        status, out, err = await self._run(
            f"[ -e {f} ] || exit 66; cat {f} && printf %s {sep} && cat {marker} 2>/dev/null; exit 0",
            check=False)
        if status == 66:
            return None, ""
        if status != 0:
            raise TrafficError(f"{self.name}: cannot read {self._where()}: {(out + err).strip()}")
        text, _, loaded = out.rpartition(_READ_SEPARATOR)
        return text, loaded.strip()

    def _nginx(self, *args: str) -> str:
        argv = [self.nginx_bin]
        if self.nginx_conf:
            argv += ["-c", self.nginx_conf]
        if self.nginx_globals:
            argv += ["-g", self.nginx_globals]
        return " ".join(shlex.quote(a) for a in [*argv, *args])

    async def _set_down(self, host: Host, down: bool) -> None:
        transport = await self._connect()
        async with _edit_lock(transport.host, self.include_path):
            for _ in range(CAS_RETRIES):
                text, loaded = await self._read()
                old_sha = sha256_text(text) if text is not None else MISSING
                if text is None and self.hosts is not None:
                    text = render_upstream(self.upstream, self.hosts, self.port,
                                           server_params=self.server_params, keepalive=self.keepalive)
                line = self._line(host, text)
                assert text is not None
                new_text = toggle_down(text, line, down) if line.down != down else text
                if new_text == text and old_sha == loaded:
                    return  # already written and loaded
                if await self._apply(old_sha, new_text):
                    break
            else:
                raise TrafficError(f"{self.name}: {self._where()} kept changing while graylift edited it "
                                   f"({CAS_RETRIES} tries); is another tool rewriting it?")
        if self.reload_settle > 0:
            await asyncio.sleep(self.reload_settle)  # new workers take over; old ones finish their requests

    async def _apply(self, old_sha: str, new_text: str) -> bool:
        """Swap the file (if still ``old_sha``), test, reload. False when it changed under us."""
        q = shlex.quote
        f = self.include_path
        new_sha = sha256_text(new_text)
        payload = base64.b64encode(new_text.encode()).decode()
        script = f"""
set -u
f={q(f)}; tmp={q(f + ".graylift.tmp")}; bak={q(f + ".graylift.bak")}; marker={q(f + ".graylift.loaded")}
exec 9>>{q(f + ".graylift.lock")} || exit {LOCK_EXIT}
flock -w {LOCK_WAIT} 9 || {{ echo "lock {f}.graylift.lock busy for {LOCK_WAIT}s" >&2; exit {LOCK_EXIT}; }}
if [ -e "$f" ]; then current=$(sha256sum < "$f" | cut -c1-64); else current={MISSING}; fi
[ "$current" = {q(old_sha)} ] || exit {CHANGED_EXIT}
rm -f "$bak"
if [ "$current" != {q(new_sha)} ]; then
  printf %s {q(payload)} | base64 -d > "$tmp" || exit 1
  [ -e "$f" ] && {{ cp -p "$f" "$bak" || exit 1; }}
  mv -f "$tmp" "$f" || exit 1
fi
if ! out=$({self._nginx("-t")} 2>&1); then
  if [ -e "$bak" ]; then mv -f "$bak" "$f"; elif [ "$current" = {MISSING} ]; then rm -f "$f"; fi
  printf '%s\\n' "$out" >&2
  exit {TEST_FAILED_EXIT}
fi
out=$({self._nginx("-s", "reload")} 2>&1) || {{ printf '%s\\n' "$out" >&2; exit {RELOAD_FAILED_EXIT}; }}
printf '%s\\n' {q(new_sha)} > "$marker"
rm -f "$bak"
"""
        status, out, err = await self._run(script, check=False)
        if status == 0:
            return True
        if status == CHANGED_EXIT:
            return False
        message = _nginx_message(out + err)
        if status == TEST_FAILED_EXIT:
            raise TrafficError(f"{self.name}: 'nginx -t' rejected the new {self._where()}; the previous file "
                               f"was restored and nginx was not reloaded. nginx said:\n{message}")
        if status == RELOAD_FAILED_EXIT:
            raise TrafficError(f"{self.name}: 'nginx -s reload' failed after {self._where()} was updated "
                               "(is the nginx master running, with the pid file its config names?):\n"
                               f"{message}")
        raise TrafficError(f"{self.name}: editing {self._where()} failed (exit {status}):\n{message}")


def _nginx_message(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-10:]) or "    (no output)"
