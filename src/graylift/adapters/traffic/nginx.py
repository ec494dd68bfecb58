"""Open-source nginx: toggle ``down`` on the host's ``server`` line of an upstream, test, reload.

The config files are the source of truth: graylift never re-renders an upstream from its own host list,
it only adds or removes the ``down`` flag on the one ``server <address>:<port>`` line of the host, so
weights, other parameters, comments and servers graylift does not know stay exactly as written.
Which file holds that line comes from ``nginx -T`` (``graylift.adapters.traffic.nginx_conf``): the include
holding the whole ``upstream`` block, or a file of bare ``server`` lines included inside the block in
nginx.conf. The configured ``include`` must be one of the files holding the upstream's servers. A missing
include can be seeded from ``hosts`` (``render_upstream``).

Each edit runs as ONE shell script on the LB host, under ``flock`` on ``<file>.graylift.lock``:
compare-and-swap on the file's sha256 (another controller edited it meanwhile -> retry), write a temp
file and rename it over the file, ``nginx -t``; on failure restore the previous file and fail with
nginx's own message; else ``nginx -s reload`` and record the loaded file's sha256 in
``<file>.graylift.loaded``. Verification reads the file and that marker back: a host is out only when
its line says ``down`` *and* that file is the one nginx reloaded, so a crash between rename and reload
is repaired by the next (idempotent) call instead of being mistaken for done.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import posixpath
import re
import shlex
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from graylift.adapters._preflight import every_host, names
from graylift.adapters.registry import Backend, Build
from graylift.adapters.traffic.nginx_conf import (
    ServerLine,
    UpstreamLayout,
    find_layout,
    find_server,
    parse_dump,
    render_upstream,
    toggle_down,
)
from graylift.adapters.transport.local import CONTROLLER, LocalTransport
from graylift.core.model import Host
from graylift.errors import TrafficError, TransportError
from graylift.ports import Preflight, Transport
from graylift.schema import AbsPath, Flag, PlainName, Port, PositiveInt, Seconds, Section, Text

__all__ = ["NginxSwitch", "NginxTraffic", "ServerLine", "find_server", "render_upstream", "sha256_text", "toggle_down"]

TransportFactory = Callable[[], Awaitable[Transport]]

MISSING = "missing"
CHANGED_EXIT = 75  # the file changed between our read and our write: read again
TEST_FAILED_EXIT = 76  # nginx -t refused the new file (restored)
RELOAD_FAILED_EXIT = 77
LOCK_EXIT = 78
CAS_RETRIES = 5
COMMAND_TIMEOUT = 60.0
LOCK_WAIT = 30
_READ_SEPARATOR = "\n#--graylift-loaded--\n"
_LOG_PREFIX = re.compile(r"^(?:nginx: |\S+ \S+ )\[(\w+)\] (?:\d+#\d+: )?")  # "2024/05/01 12:00:00 [emerg] 7#7: "

# One lock per (event loop, LB host, path): the parallel take-outs of one batch edit one file in turn.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int, str], asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


def _edit_lock(host: Host, path: str) -> asyncio.Lock:
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault((host.address, host.port, path), asyncio.Lock())


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class NginxTraffic(Section):
    """Open-source nginx: toggle ``down`` on the host's line of an upstream include, test, reload."""

    type: Literal["nginx"] = "nginx"
    include: AbsPath
    upstream: Text
    port: Port
    lb_host: Text | None = None  # None: nginx runs on the controller; else reached over SSH
    lb_port: Port = 22
    lb_user: PlainName = "root"
    seed: Flag = False  # a missing include is written from the release's hosts
    server_params: str = ""
    keepalive: PositiveInt | None = None
    nginx_bin: Text = "nginx"
    nginx_conf: AbsPath | None = None
    nginx_globals: Text | None = None
    reload_settle: Seconds = 0.5
    name: Text | None = None


class NginxSwitch:
    """One upstream of one nginx (local or over SSH); several nginx LBs are several switches."""

    propagation_seconds = 0.0  # a load balancer's change is seen at once

    def __init__(self, cfg: NginxTraffic, *, transport_factory: TransportFactory,
                 hosts: Sequence[Host] | None = None) -> None:
        self.cfg = cfg
        self.transport_factory = transport_factory
        self.hosts = list(hosts) if hosts is not None else None  # seed a missing include with these
        self.name = cfg.name or f"nginx:{cfg.upstream}"
        self._transport: Transport | None = None
        self._layout: UpstreamLayout | None = None  # None once discovered: the include is to be seeded
        self._discovered = False

    @classmethod
    def from_config(cls, cfg: NginxTraffic, build: Build) -> NginxSwitch:
        """nginx on the controller (no ``lb_host``), or on ``lb_host`` through the release's SSH connector."""
        connect = build.connect
        if cfg.lb_host is None:
            controller = LocalTransport(CONTROLLER)

            async def factory() -> Transport:
                return controller
        elif connect is None:
            raise build.fail("lb_host needs the release's SSH connector", "lb_host")
        else:
            lb = Host(name=cfg.lb_host, address=cfg.lb_host, port=cfg.lb_port, user=cfg.lb_user)

            async def factory() -> Transport:
                return await connect(lb)

        return cls(cfg, transport_factory=factory, hosts=build.hosts if cfg.seed else None)

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

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """One ``nginx -T``: the upstream, which layout holds its servers, and every host's line. Writes nothing."""
        try:
            layout = await self._find_layout()
        except TrafficError as exc:
            if await self._will_seed():
                return Preflight(notes=(f"{self.name}: {self._where(self.cfg.include)} does not exist; graylift "
                                        f"seeds it with upstream {self.cfg.upstream} and {len(self.hosts or [])} "
                                        "servers at the first take-out",))
            return Preflight(problems=(every_host(self.name, exc),))
        problems = []
        if self._include_ok(layout):
            self._layout, self._discovered = layout, True  # take_out starts from what was checked here
        else:
            problems.append(self._include_problem(layout))
        down: list[Host] = []
        for host in hosts:
            path = layout.file_for(self._addresses(host))
            if path is None:
                problems.append(f"{self.name}: {host.name}: upstream {self.cfg.upstream} has no 'server "
                                f"{host.address}:{self.cfg.port}' line in {', '.join(layout.server_files)}; add it "
                                "(graylift only toggles 'down')")
            elif any(layout.servers.get(a, ("", False))[1] for a in self._addresses(host)):
                down.append(host)
        notes = [f"{self.name}: {layout.describe()}"]
        if down:
            notes.append(f"{self.name}: already marked down: {names([h.name for h in down])}")
        return Preflight(tuple(problems), tuple(notes))

    async def close(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()

    # where the host's line is --------------------------------------------------------------------

    def _addresses(self, host: Host) -> list[str]:
        return [f"{host.address}:{self.cfg.port}", f"{host.name}:{self.cfg.port}"]

    def _where(self, path: str) -> str:
        return f"{path} on {self._lb()}"

    def _include_ok(self, layout: UpstreamLayout) -> bool:
        return posixpath.normpath(self.cfg.include) in layout.server_files

    def _include_problem(self, layout: UpstreamLayout) -> str:
        return (f"{self.name}: every host: nginx -T shows the servers of upstream {self.cfg.upstream} in "
                f"{', '.join(layout.server_files)}, not in the configured include {self.cfg.include}; "
                f"set include to {layout.server_files[0]}")

    async def _will_seed(self) -> bool:
        return self.hosts is not None and (await self._read(self.cfg.include))[0] is None

    def _lb(self) -> str:
        return self._transport.host.name if self._transport is not None else "?"

    async def _find_layout(self) -> UpstreamLayout:
        """The upstream's block and server files from ONE ``nginx -T`` (every file nginx would load)."""
        status, out, err = await self._run(self._nginx("-T"), check=False)
        if status != 0:
            lines = [_LOG_PREFIX.sub(r"[\1] ", line).strip() for line in err.splitlines() if line.strip()]
            first = next((line for line in lines if "[emerg]" in line), lines[0] if lines else "(no output)")
            raise TrafficError(f"{self.name}: '{self._nginx('-T')}' failed on {self._lb()}: {first}; fix the "
                               "config (or nginx_conf) so that 'nginx -t' passes")
        try:
            return find_layout(parse_dump(out), self.cfg.upstream)
        except ValueError as exc:
            raise TrafficError(f"{self.name}: nginx -T on {self._lb()}: {exc}; add the upstream or fix "
                               "upstream / nginx_conf") from None

    async def _discover(self) -> UpstreamLayout | None:
        """The upstream's layout; None when the include is missing and graylift seeds it."""
        try:
            layout = await self._find_layout()
        except TrafficError:
            if await self._will_seed():
                return None
            raise
        if not self._include_ok(layout):
            raise TrafficError(self._include_problem(layout).replace(" every host:", "", 1))
        return layout

    async def _target(self, host: Host) -> tuple[str, str | None]:
        """(the file with the host's server line, the upstream name when that file holds the block)."""
        transport = await self._connect()
        for fresh in (False, True):  # a host not in the known layout: read nginx -T once more
            if fresh or not self._discovered:
                async with _edit_lock(transport.host, "nginx -T"):
                    if fresh or not self._discovered:
                        self._layout, self._discovered = await self._discover(), True
            if self._layout is None:
                return self.cfg.include, self.cfg.upstream
            path = self._layout.file_for(self._addresses(host))
            if path is not None:
                return path, self._layout.block_in(path)
        assert self._layout is not None
        raise self._no_line(host, ", ".join(self._layout.server_files))

    def _no_line(self, host: Host, where: str) -> TrafficError:
        return TrafficError(f"{self.name}: upstream {self.cfg.upstream} has no 'server {host.address}:{self.cfg.port}' "
                            f"line for host {host.name} in {where}; add it (graylift only toggles 'down', it "
                            "never adds or removes servers)")

    def _line(self, host: Host, text: str | None, path: str, block: str | None) -> ServerLine:
        if text is None:
            raise TrafficError(f"{self.name}: {self._where(path)} does not exist; create it (an 'upstream "
                               f"{self.cfg.upstream} {{ ... }}' block with one 'server address:port;' line per "
                               "host) or configure 'hosts' so graylift seeds it")
        try:
            line = find_server(text, block, self._addresses(host))
        except ValueError as exc:
            self._discovered = False
            raise TrafficError(f"{self.name}: {self._where(path)}: {exc}; fix the file") from None
        if line is None:
            self._discovered = False  # moved since nginx -T was read: the next call looks again
            raise self._no_line(host, self._where(path))
        return line

    # reading and editing ---------------------------------------------------------------------------

    async def _loaded_state(self, host: Host) -> tuple[bool, bool]:
        """(the host's line says down, the file is the one nginx last reloaded).

        Read under the edit lock: a parallel edit renames the file before it reloads nginx, and a read in
        between would see a file that is not loaded yet.
        """
        path, block = await self._target(host)
        transport = await self._connect()
        async with _edit_lock(transport.host, path):
            text, loaded = await self._read(path)
        line = self._line(host, text, path, block)
        return line.down, text is not None and loaded == sha256_text(text)

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
            result = await transport.run(script, timeout=COMMAND_TIMEOUT, check=check)  # a shell runs it
        except TransportError as exc:
            raise TrafficError(f"{self.name}: {exc}") from exc
        return result.exit_status, result.stdout, result.stderr

    async def _read(self, path: str) -> tuple[str | None, str]:
        """(file text or None when missing, sha256 recorded at the last successful reload or '')."""
        f = shlex.quote(path)
        marker = shlex.quote(path + ".graylift.loaded")
        sep = shlex.quote(_READ_SEPARATOR)
        status, out, err = await self._run(
            f"[ -e {f} ] || exit 66; cat {f} && printf %s {sep} && cat {marker} 2>/dev/null; exit 0",
            check=False)
        if status == 66:
            return None, ""
        if status != 0:
            raise TrafficError(f"{self.name}: cannot read {self._where(path)}: {(out + err).strip()}")
        text, _, loaded = out.rpartition(_READ_SEPARATOR)
        return text, loaded.strip()

    def _nginx(self, *args: str) -> str:
        argv = [self.cfg.nginx_bin]
        if self.cfg.nginx_conf:
            argv += ["-c", self.cfg.nginx_conf]
        if self.cfg.nginx_globals:
            argv += ["-g", self.cfg.nginx_globals]
        return " ".join(shlex.quote(a) for a in [*argv, *args])

    async def _set_down(self, host: Host, down: bool) -> None:
        path, block = await self._target(host)
        transport = await self._connect()
        async with _edit_lock(transport.host, path):
            for _ in range(CAS_RETRIES):
                text, loaded = await self._read(path)
                old_sha = sha256_text(text) if text is not None else MISSING
                if text is None and self.hosts is not None:
                    text = render_upstream(self.cfg.upstream, self.hosts, self.cfg.port,
                                           server_params=self.cfg.server_params, keepalive=self.cfg.keepalive)
                line = self._line(host, text, path, block)
                assert text is not None
                new_text = toggle_down(text, line, down) if line.down != down else text
                if new_text == text and old_sha == loaded:
                    return  # already written and loaded
                if await self._apply(path, old_sha, new_text):
                    break
            else:
                raise TrafficError(f"{self.name}: {self._where(path)} kept changing while graylift edited it "
                                   f"({CAS_RETRIES} tries); is another tool rewriting it?")
        if self.cfg.reload_settle > 0:
            await asyncio.sleep(self.cfg.reload_settle)  # new workers take over; old ones finish their requests

    async def _apply(self, f: str, old_sha: str, new_text: str) -> bool:
        """Swap the file (if still ``old_sha``), test, reload. False when it changed under us."""
        q = shlex.quote
        new_sha = sha256_text(new_text)
        payload = base64.b64encode(new_text.encode()).decode()
        script = f"""
set -u
f={q(f)}; tmp={q(f + ".graylift.tmp")}; bak={q(f + ".graylift.bak")}; marker={q(f + ".graylift.loaded")}
exec 9>>{q(f + ".graylift.lock")} || exit {LOCK_EXIT}
flock -w {LOCK_WAIT} 9 || {{ echo {q(f"lock {f}.graylift.lock busy for {LOCK_WAIT}s")} >&2; exit {LOCK_EXIT}; }}
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
            raise TrafficError(f"{self.name}: 'nginx -t' rejected the new {self._where(f)}; the previous file "
                               f"was restored and nginx was not reloaded. nginx said:\n{message}")
        if status == RELOAD_FAILED_EXIT:
            raise TrafficError(f"{self.name}: 'nginx -s reload' failed after {self._where(f)} was updated "
                               "(is the nginx master running, with the pid file its config names?):\n"
                               f"{message}")
        raise TrafficError(f"{self.name}: editing {self._where(f)} failed (exit {status}):\n{message}")


def _nginx_message(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-10:]) or "    (no output)"


BACKEND = Backend(NginxTraffic, NginxSwitch.from_config)
