"""SSH transport (asyncssh): one cached connection per host, host keys always verified.

* Host keys are checked against the configured known_hosts file, always; the user's
  ~/.ssh/config is ignored (``config=[]``) so a release behaves the same from every controller.
* Every command runs under the host's coreutils ``timeout`` in its own process group, so a hung
  command is killed on the host (an SSH channel without a pty does not kill its command when
  closed). The client side waits a few seconds longer, then sends KILL, closes the channel and
  raises CommandTimeout: a hung host cannot hang graylift.
* ``stdin`` reaches the command over the channel, then EOF: never in its command line, so a secret
  handed to a host this way is not in ``ps``, /proc/*/cmdline or an error message.
* known_hosts and the client key are read once per connector and again only when their file changes:
  asyncssh given a path parses the whole known_hosts file at every connect, so N connections parsed N x N
  host keys (a 1000-host lab release spent most of its controller CPU there).
* Ciphers: AES-GCM first, then asyncssh's other defaults (chacha20-poly1305 among them) for hosts without
  it. asyncssh's chacha20-poly1305 builds several cipher contexts per packet: over 200 commands on the lab
  it cost the controller about 1.6 ms of CPU per command against 1.0 ms for aes128-gcm (CPU with AES
  instructions), the most expensive thing left in a release's profile.
* The locale is left alone (LC_ALL=C would change how e.g. a JVM started by the command encodes files).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shlex
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from pydantic import Field

from graylift.adapters.transport._asyncssh import asyncssh
from graylift.core.model import Host
from graylift.deadline import within
from graylift.errors import CommandTimeout, ConfigError, HostUnreachable, RemoteCommandFailed, TransportError
from graylift.ports import CommandResult
from graylift.schema import LocalPath, PlainName, Port, PositiveInt, PositiveSeconds, Section

# Seconds the client waits beyond a command's own timeout for the host-side ``timeout`` to act.
CLIENT_GRACE = 5.0
# Seconds between TERM and KILL on the host when a command times out.
KILL_AFTER = 2.0
KEEPALIVE_COUNT = 3  # unanswered keepalives before a busy connection is given up

_Key = tuple[str, int, str]
T = TypeVar("T")

PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@functools.cache
def encryption_algs() -> list[str]:
    """The ciphers offered, in order: :data:`PREFERRED_CIPHERS`, then asyncssh's other defaults."""
    from asyncssh.encryption import get_default_encryption_algs

    defaults = [alg.decode() for alg in get_default_encryption_algs()]
    return [alg for alg in PREFERRED_CIPHERS if alg in defaults] + [
        alg for alg in defaults if alg not in PREFERRED_CIPHERS]


def _where(host: Host) -> str:
    return f"{host.user}@{host.address}:{host.port}"


class SshTransport:
    """Commands and uploads on one host over a connection its connector opened (and may reopen)."""

    def __init__(self, connector: SshConnector, host: Host) -> None:
        self.host = host
        self._connector = connector
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self.busy = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure_connected(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is not None and self._conn.is_closed():
                self._conn = None
                await self._connector.release_slot()
            if self._conn is None:
                await self._connector.acquire_slot()
                try:
                    self._conn = await self._connector.open_connection(self.host)
                except BaseException:
                    await self._connector.release_slot()
                    raise
            return self._conn

    def drop(self) -> None:
        """Close the connection without waiting (used to free a slot); the next call reconnects."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def run(self, command: str, *, timeout: float, check: bool = True,
                  stdin: str | None = None) -> CommandResult:
        """Run ``command`` on the host; ``stdin`` (if given) goes to its standard input over the channel,
        followed by EOF (never into the command line)."""
        wrapped = f"exec timeout -k {KILL_AFTER:g} {timeout:g} sh -c {shlex.quote(command)}"
        self.busy += 1
        started = time.monotonic()
        try:
            process = await self._open_process(wrapped, stdin)
            try:
                completed = await within(process.wait(check=False), timeout + CLIENT_GRACE)
            except TimeoutError:
                with contextlib.suppress(OSError, asyncssh.Error):
                    process.send_signal("KILL")
                process.close()
                raise CommandTimeout(self.host.name, command, timeout) from None
            except (OSError, asyncssh.Error) as exc:
                raise HostUnreachable(self.host.name, f"connection to {_where(self.host)} lost while running "
                                      f"a command ({_reason(exc)})") from exc
        finally:
            await self._done()
        status = completed.exit_status
        if status is None:  # killed by a signal on the host
            status = 128 + _signal_number(completed.exit_signal[0] if completed.exit_signal else None)
        stdout, stderr = _text(completed.stdout), _text(completed.stderr)
        if status in (124, 137) and time.monotonic() - started >= timeout - 0.5:
            raise CommandTimeout(self.host.name, command, timeout)
        if check and status != 0:
            raise RemoteCommandFailed(self.host.name, command, status, stdout + stderr)
        return CommandResult(status, stdout, stderr)

    async def ping(self, *, timeout: float) -> None:
        """The keepalive request OpenSSH answers itself (``keepalive@openssh.com``, as asyncssh's own keepalives
        send it): one round trip on the connection, no session, no process on the host. A connection that closed
        under it is no answer (asyncssh fails a pending request with the same reply when it cleans up)."""
        self.busy += 1
        try:
            conn = self._keepalive(await self.ensure_connected())
            await within(conn._make_global_request(b"keepalive@openssh.com"), timeout)
            if conn.is_closed():
                raise HostUnreachable(self.host.name, f"connection to {_where(self.host)} lost while waiting for "
                                      "it to answer")
        except TimeoutError:
            raise CommandTimeout(self.host.name, "a keepalive round trip", timeout) from None
        except (OSError, asyncssh.Error) as exc:
            raise HostUnreachable(self.host.name, f"connection to {_where(self.host)} lost while waiting for it "
                                  f"to answer ({_reason(exc)})") from exc
        finally:
            await self._done()

    async def _open_process(self, command: str, stdin: str | None) -> asyncssh.SSHClientProcess[str]:
        """Open a session; if the cached connection turns out dead, reconnect once and retry."""
        for attempt in (1, 2):
            conn = self._keepalive(await self.ensure_connected())
            try:
                # ``input`` is written to the channel, then EOF; without it stdin is /dev/null
                return await conn.create_process(command, term_type=None, input=stdin or None,
                                                 stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace")
            except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, asyncssh.DisconnectError,
                    BrokenPipeError, ConnectionResetError) as exc:
                async with self._lock:
                    if self._conn is conn:
                        self.drop()
                        await self._connector.release_slot()
                if attempt == 2:
                    raise HostUnreachable(self.host.name, f"cannot open a session on {_where(self.host)} "
                                          f"({_reason(exc)})") from exc
        raise AssertionError("unreachable")

    async def put(self, local: Path, remote: str) -> None:
        """Upload via SFTP to ``remote + '.tmp'``, then rename over ``remote`` (atomic on the host)."""
        if not local.is_file():
            raise TransportError(self.host.name, f"cannot upload {local}: no such local file")
        tmp = remote + ".tmp"
        timeout = self._connector.cfg.command_timeout
        self.busy += 1
        try:
            conn = self._keepalive(await self.ensure_connected())

            async def upload() -> None:
                async with conn.start_sftp_client() as sftp:
                    await sftp.put(str(local), tmp)
                    await sftp.posix_rename(tmp, remote)

            await within(upload(), timeout)
        except TimeoutError:
            raise CommandTimeout(self.host.name, f"upload {local} -> {remote}", timeout) from None
        except asyncssh.SFTPError as exc:
            raise TransportError(self.host.name, f"upload of {local} to {remote} failed: {exc.reason} "
                                 "(does the directory exist and is it writable?)") from exc
        except (OSError, asyncssh.Error) as exc:
            raise HostUnreachable(self.host.name, f"upload of {local} to {remote} failed: "
                                  f"{_reason(exc)}") from exc
        finally:
            await self._done()

    def _keepalive(self, conn: asyncssh.SSHClientConnection) -> asyncssh.SSHClientConnection:
        """Keepalives on while this transport is busy: a connection at rest sends nothing (a fleet's idle
        connections would otherwise cost the controller a round trip each, every ``keepalive_seconds``)."""
        conn.set_keepalive(self._connector.cfg.keepalive_seconds)
        return conn

    async def _done(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            if self._conn is not None and not self._conn.is_closed():
                self._conn.set_keepalive(0)  # at rest: a dead peer is found by the next use's keepalives
            await self._connector.notify_idle(self)

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()
                await conn.wait_closed()
                await self._connector.release_slot()


class SshConfig(Section):
    """How graylift reaches the hosts (the ``ssh`` section of graylift.yaml)."""

    user: PlainName = "root"
    port: Port = 22
    key: LocalPath | None = None
    known_hosts: LocalPath = Field(default=Path("~/.ssh/known_hosts"), validate_default=True)
    connect_timeout: PositiveSeconds = 10.0
    command_timeout: PositiveSeconds = 120.0
    max_connections: PositiveInt = 200
    # while a command or an upload runs, a keepalive after this many seconds without a packet (the third
    # unanswered one closes the connection: a host that died mid-command is noticed); none on an idle connection
    keepalive_seconds: PositiveSeconds = 15.0


class SshConnector:
    """Opens SSH transports; at most ``max_connections`` connections are open at once (idle ones
    are closed to make room and reopened on their next use)."""

    def __init__(self, cfg: SshConfig) -> None:
        self.cfg = cfg
        self.known_hosts = Path(cfg.known_hosts).expanduser()
        self.client_key = Path(cfg.key).expanduser() if cfg.key is not None else None
        self._transports: dict[_Key, SshTransport] = {}
        # Transports in the order they last went idle, the least recently used first: where room is made. An
        # entry may have turned busy or lost its connection since; it is looked at and dropped when reached.
        self._idle: OrderedDict[SshTransport, None] = OrderedDict()
        self._read: dict[Path, tuple[tuple[int, int], object]] = {}  # file -> ((mtime, size), what it holds)
        self._open = 0
        self._slots = asyncio.Condition()

    async def connect(self, host: Host) -> SshTransport:
        key = (host.address, host.port, host.user)
        transport = self._transports.get(key)
        if transport is None:
            transport = self._transports[key] = SshTransport(self, host)
        await transport.ensure_connected()
        if transport.busy == 0:
            self._idle.setdefault(transport)
        return transport

    async def close(self) -> None:
        transports = list(self._transports.values())
        self._transports.clear()
        self._idle.clear()
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)

    async def acquire_slot(self) -> None:
        async with self._slots:
            while self._open >= self.cfg.max_connections:
                idle = self._least_recently_used()
                if idle is not None:
                    idle.drop()
                    self._open -= 1
                    continue
                await self._slots.wait()
            self._open += 1

    def _least_recently_used(self) -> SshTransport | None:
        """The idle connected transport used longest ago, or None: stale entries on the way (busy, closed, or
        connecting, as the one asking for a slot is) are dropped from the order, so each connect looks at a few
        transports, not at every one."""
        while self._idle:
            transport = next(iter(self._idle))
            del self._idle[transport]
            if transport.connected and transport.busy == 0 and not transport._lock.locked():
                return transport
        return None

    async def notify_idle(self, transport: SshTransport) -> None:
        """``transport`` went idle: it joins the end of the order, and a connect waiting for a free slot may
        now close it."""
        self._idle.pop(transport, None)
        self._idle[transport] = None
        async with self._slots:
            self._slots.notify_all()

    async def release_slot(self) -> None:
        async with self._slots:
            self._open = max(0, self._open - 1)
            self._slots.notify_all()

    async def open_connection(self, host: Host) -> asyncssh.SSHClientConnection:
        if not self.known_hosts.is_file():
            raise ConfigError(f"known_hosts file {self.known_hosts} does not exist; add the hosts' keys "
                              "to it (host keys are always verified)", field="ssh.known_hosts")
        where = _where(host)
        options: dict[str, object] = {}
        try:
            if self.client_key is not None:
                options["client_keys"] = [self._parsed(self.client_key, asyncssh.read_private_key)]
                options["agent_path"] = None
            known_hosts = self._parsed(self.known_hosts, asyncssh.read_known_hosts)
            return await within(  # the limit is ours, on this process's running time (asyncssh's is not)
                asyncssh.connect(host.address, host.port, username=host.user,
                                 known_hosts=known_hosts, config=[],
                                 connect_timeout=None, keepalive_interval=0,
                                 keepalive_count_max=KEEPALIVE_COUNT, encryption_algs=encryption_algs(),
                                 **options),
                self.cfg.connect_timeout)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostUnreachable(host.name, f"host key of {host.address}:{host.port} is unknown or does not "
                                  f"match {self.known_hosts} ({exc.reason}); fix known_hosts with the host's "
                                  "real key (check its fingerprint) - host key checking stays on") from exc
        except asyncssh.PermissionDenied as exc:
            key = self.client_key or "the agent/default keys"
            raise HostUnreachable(host.name, f"authentication failed for {where} with {key}; "
                                  "check the user and that the key is in authorized_keys") from exc
        except ConnectionRefusedError as exc:
            raise HostUnreachable(host.name, f"connection refused by {host.address}:{host.port} "
                                  "(is sshd running on that port?)") from exc
        except (TimeoutError, asyncssh.ConnectionLost) as exc:
            raise HostUnreachable(host.name, f"connecting to {where} timed out after "
                                  f"{self.cfg.connect_timeout:g}s") from exc
        except OSError as exc:
            if exc.errno is None and "key" in str(exc).lower():
                raise ConfigError(f"cannot read SSH key {self.client_key}: {exc}", field="ssh.key") from exc
            raise HostUnreachable(host.name, f"cannot connect to {where}: {exc.strerror or exc}") from exc
        except asyncssh.KeyImportError as exc:
            raise ConfigError(f"cannot load SSH key {self.client_key}: {exc}", field="ssh.key") from exc
        except (asyncssh.Error, ValueError) as exc:
            raise HostUnreachable(host.name, f"SSH to {where} failed: {_reason(exc)}") from exc

    def _parsed(self, path: Path, read: Callable[[str], T]) -> T:
        """``read(path)``, kept until the file's modification time or size changes."""
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        kept = self._read.get(path)
        if kept is None or kept[0] != version:
            kept = self._read[path] = (version, read(str(path)))
        return cast(T, kept[1])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__


def _text(data: object) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def _signal_number(name: str | None) -> int:
    import signal

    try:
        return int(signal.Signals["SIG" + (name or "KILL")])
    except KeyError:
        return 9
