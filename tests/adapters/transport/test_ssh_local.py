"""SSH transport against a real sshd on 127.0.0.1, and the local transport."""

from __future__ import annotations

import asyncio
import secrets
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from graylift.adapters.health import CommandProbe, HostWait, ProcessProbe
from graylift.adapters.transport.local import LocalConnector
from graylift.adapters.transport.ssh import SshConfig, SshConnector
from graylift.core.fence import fenced_command, sealed_input
from graylift.core.model import Host
from graylift.errors import CommandTimeout, ConfigError, HostUnreachable, RemoteCommandFailed, TransportError
from graylift.ports import Transport
from tests.adapters.conftest import Sshd, needs_root, ssh_connector, ssh_host


def _running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode == 0


def argv_holding(secret: str) -> list[str]:
    """The command lines (/proc/*/cmdline) of running processes that contain ``secret``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            data = cmdline.read_bytes()
        except OSError:  # the process ended while we looked
            continue
        if secret.encode() in data:
            found.append(data.replace(b"\0", b" ").decode("utf-8", "replace"))
    return found


async def check_stdin(transport: Transport, tmp_path: Path) -> None:
    """A value given as stdin reaches the command, and is in no process's argv while the command runs."""
    secret = "s3cret-" + secrets.token_hex(8)
    seen, release = tmp_path / "seen", tmp_path / "release"
    # reads the value, shows it has it, then waits for the test to look at every process's argv
    command = (f"IFS= read -r value; printf %s \"$value\" > {shlex.quote(str(seen))}; "
               f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.05; done; printf %s \"$value\"")
    running = asyncio.create_task(transport.run(command, timeout=20, stdin=secret + "\n"))
    try:
        deadline = time.monotonic() + 10
        while not (seen.exists() and seen.read_text()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert seen.read_text() == secret
        assert not running.done()
        assert argv_holding(secret) == []
    finally:
        release.touch()
    assert (await running).stdout == secret
    # stdin is passed through as it is (several lines, quotes, $); without stdin a reader gets EOF at once
    text = "line one\n'quoted' \"double\" $HOME `x`\nno newline at the end"
    assert (await transport.run("cat", timeout=10, stdin=text)).stdout == text
    assert (await transport.run("cat; echo end", timeout=10)).stdout == "end\n"
    assert (await transport.run("cat; echo end", timeout=10, stdin="")).stdout == "end\n"


@pytest.mark.root
@needs_root
async def test_ssh_run_exit_codes_and_reuse(sshd: Sshd) -> None:
    connector = ssh_connector(sshd)
    try:
        transport = await connector.connect(ssh_host(sshd))
        result = await transport.run("echo hello; echo err >&2", timeout=10)
        assert (result.exit_status, result.stdout, result.stderr) == (0, "hello\n", "err\n")
        result = await transport.run("exit 3", timeout=10, check=False)
        assert result.exit_status == 3 and not result.ok
        with pytest.raises(RemoteCommandFailed) as failed:
            await transport.run("echo line-one; echo line-two >&2; exit 7", timeout=10)
        assert failed.value.exit_status == 7 and "line-two" in str(failed.value) and "h1" in str(failed.value)
        # one cached connection per host, shared by concurrent commands
        assert await connector.connect(ssh_host(sshd)) is transport
        outs = await asyncio.gather(*(transport.run(f"echo {i}", timeout=10) for i in range(20)))
        assert [o.stdout.strip() for o in outs] == [str(i) for i in range(20)]
        # a cached connection that died is reopened
        conn = transport._conn
        assert conn is not None
        # AES-GCM is preferred (asyncssh's chacha20-poly1305 costs the controller more CPU per packet)
        assert conn.get_extra_info("send_cipher") == conn.get_extra_info("recv_cipher") == "aes128-gcm@openssh.com"
        conn.close()
        await conn.wait_closed()
        assert (await transport.run("echo again", timeout=10)).stdout == "again\n"
    finally:
        await connector.close()


@pytest.mark.root
@needs_root
async def test_ssh_stdin_reaches_the_command_not_its_argv(sshd: Sshd, tmp_path: Path) -> None:
    connector = ssh_connector(sshd)
    try:
        await check_stdin(await connector.connect(ssh_host(sshd)), tmp_path)
    finally:
        await connector.close()


async def test_local_stdin_reaches_the_command_not_its_argv(tmp_path: Path) -> None:
    await check_stdin(await LocalConnector().connect(Host(name="controller", address="127.0.0.1")), tmp_path)


@pytest.mark.root
@needs_root
async def test_ssh_timeout_kills_remote_process(sshd: Sshd) -> None:
    connector = ssh_connector(sshd)
    try:
        transport = await connector.connect(ssh_host(sshd))
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as timed_out:
            await transport.run("sleep 1000.25; echo never", timeout=1)
        assert 0.9 < time.monotonic() - started < 5
        assert "timed out after 1s" in str(timed_out.value)
        deadline = time.monotonic() + 3
        while _running("sleep 1000.25") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not _running("sleep 1000.25"), "the remote sleep survived the timeout"
        assert (await transport.run("echo still-usable", timeout=10)).stdout == "still-usable\n"
    finally:
        await connector.close()


@pytest.mark.root
@needs_root
async def test_ssh_put_is_atomic_and_checked(sshd: Sshd, tmp_path: Path) -> None:
    local = tmp_path / "pkg.tar.gz"
    local.write_bytes(b"x" * 200_000)
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    connector = ssh_connector(sshd)
    try:
        transport = await connector.connect(ssh_host(sshd))
        await transport.put(local, str(remote_dir / "pkg.tar.gz"))
        await transport.put(local, str(remote_dir / "pkg.tar.gz"))  # overwrite: idempotent
        assert (remote_dir / "pkg.tar.gz").read_bytes() == local.read_bytes()
        assert sorted(p.name for p in remote_dir.iterdir()) == ["pkg.tar.gz"]
        with pytest.raises(TransportError) as missing_dir:
            await transport.put(local, str(tmp_path / "no-such-dir" / "pkg.tar.gz"))
        assert "no-such-dir" in str(missing_dir.value)
    finally:
        await connector.close()


@pytest.mark.root
@needs_root
async def test_ssh_host_key_mismatch_refused(sshd: Sshd, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    other_pub = Path(str(sshd.other_key) + ".pub").read_text().split()
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other_pub[0]} {other_pub[1]}\n")
    connector = ssh_connector(sshd, known_hosts=wrong)
    try:
        with pytest.raises(HostUnreachable) as refused:
            await connector.connect(ssh_host(sshd))
        message = str(refused.value)
        assert "host key" in message and str(wrong) in message and "fix known_hosts" in message
    finally:
        await connector.close()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    connector = ssh_connector(sshd, known_hosts=empty)
    with pytest.raises(HostUnreachable, match="host key"):
        await connector.connect(ssh_host(sshd))
    await connector.close()
    connector = ssh_connector(sshd, known_hosts=tmp_path / "absent")
    with pytest.raises(ConfigError, match="known_hosts"):
        await connector.connect(ssh_host(sshd))


@pytest.mark.root
@needs_root
async def test_known_hosts_is_read_once_and_again_when_it_changes(sshd: Sshd, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncssh given a path parses the whole file at every connect (N hosts: N x N keys); the connector
    reads it once, and again when the file changes, so an edited known_hosts still decides at once."""
    from graylift.adapters.transport import ssh as ssh_module

    real = ssh_module.asyncssh.read_known_hosts
    reads: list[str] = []

    def counted(path: str) -> object:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(ssh_module.asyncssh, "read_known_hosts", counted)
    known = tmp_path / "known_hosts"
    known.write_bytes(sshd.known_hosts.read_bytes())
    connector = ssh_connector(sshd, known_hosts=known)
    try:
        for _ in range(3):
            conn = await connector.open_connection(ssh_host(sshd))
            conn.close()
        assert reads == [str(known)]
        other_pub = Path(str(sshd.other_key) + ".pub").read_text().split()
        known.write_text(f"[127.0.0.1]:{sshd.port} {other_pub[0]} {other_pub[1]}\n")  # another size: re-read
        with pytest.raises(HostUnreachable, match="host key"):
            await connector.open_connection(ssh_host(sshd))
        assert len(reads) == 2
    finally:
        await connector.close()


@pytest.mark.root
@needs_root
async def test_ssh_unreachable_and_auth_failure(sshd: Sshd) -> None:
    from graylift.lab.services import free_port

    connector = ssh_connector(sshd)
    with pytest.raises(HostUnreachable, match="refused"):
        await connector.connect(ssh_host(sshd, port=free_port()))
    connector = ssh_connector(sshd, key=sshd.other_key)
    with pytest.raises(HostUnreachable, match="authentication failed"):
        await connector.connect(ssh_host(sshd))
    await connector.close()


async def test_local_run_timeout_and_put(tmp_path: Path) -> None:
    connector = LocalConnector()
    transport = await connector.connect(Host(name="controller", address="127.0.0.1"))
    assert (await transport.run("echo hi", timeout=5)).stdout == "hi\n"
    assert (await transport.run("exit 4", timeout=5, check=False)).exit_status == 4
    with pytest.raises(RemoteCommandFailed, match="exit 5"):
        await transport.run("echo boom >&2; exit 5", timeout=5)
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        await transport.run("sleep 1000.5 & sleep 1000.5; wait", timeout=0.5)
    assert time.monotonic() - started < 3
    await asyncio.sleep(0.2)
    assert not _running("sleep 1000.5"), "the process group survived the timeout"
    src = tmp_path / "a"
    src.write_text("payload")
    await transport.put(src, str(tmp_path / "b"))
    assert (tmp_path / "b").read_text() == "payload" and not (tmp_path / "b.tmp").exists()
    await connector.close()


@pytest.mark.root
@needs_root
async def test_health_probes_over_ssh(sshd: Sshd) -> None:
    from graylift.adapters.health import CommandProbe, ProcessProbe, TcpProbe, check_all

    connector = ssh_connector(sshd)
    try:
        transport = await connector.connect(ssh_host(sshd))
        # the probe's command (and its host-side `timeout` wrapper) carries the pattern: no self-match
        absent = await ProcessProbe("graylift-no-such-process-4712").check(transport)
        assert not absent.ok and "no process matches" in absent.detail
        sleeper = subprocess.Popen(["sleep", "1000.75"])
        try:
            found = await ProcessProbe("sleep 1000.75").check(transport)
            assert found.ok and str(sleeper.pid) in found.detail
        finally:
            sleeper.kill()
            sleeper.wait()
        assert (await TcpProbe(sshd.port).check(transport)).ok
        assert not (await CommandProbe("exit 1").check(transport)).ok
        # all in one command over SSH, the script on stdin: the pattern is nowhere in a command line
        together = [TcpProbe(sshd.port), ProcessProbe("graylift-no-such-process-4714"), CommandProbe("true")]
        missing = await check_all(together, transport)
        assert not missing.ok and missing.detail.startswith("process:graylift-no-such-process-4714: no process")
        assert (await check_all([TcpProbe(sshd.port), CommandProbe("test -d /")], transport)).ok
    finally:
        await connector.close()


@pytest.mark.root
@needs_root
async def test_ssh_max_connections_closes_idle_ones(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    line = sshd.known_hosts.read_text().strip()
    known.write_text(f"{line}\n{line.replace('[127.0.0.1]', '[localhost]', 1)}\n")
    connector = SshConnector(SshConfig(known_hosts=known, key=sshd.client_key, connect_timeout=5, command_timeout=30,
                                       max_connections=1))
    try:
        first = await connector.connect(ssh_host(sshd))
        second = await connector.connect(Host(name="h2", address="localhost", port=sshd.port))
        assert second.connected and not first.connected  # the idle one made room
        results = await asyncio.gather(first.run("echo a", timeout=10), second.run("echo b", timeout=10))
        assert [r.stdout for r in results] == ["a\n", "b\n"]
        assert sum(t.connected for t in (first, second)) == 1
    finally:
        await connector.close()


async def test_ssh_keepalives_only_while_the_connection_is_in_use(sshd: Sshd, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy connection is kept alive (a host that dies mid-command is noticed); an idle one sends nothing,
    so a fleet's open connections cost the controller nothing between uses."""
    from asyncssh.connection import SSHConnection

    sent: list[float] = []
    request = SSHConnection._make_keepalive_request

    async def counted(self: SSHConnection) -> None:
        sent.append(time.monotonic())
        await request(self)

    monkeypatch.setattr(SSHConnection, "_make_keepalive_request", counted)
    connector = SshConnector(SshConfig(known_hosts=sshd.known_hosts, key=sshd.client_key, connect_timeout=5,
                                       keepalive_seconds=0.2))
    try:
        transport = await connector.connect(ssh_host(sshd))
        assert (await transport.run("echo idle next", timeout=10)).ok  # (a slow start may take a keepalive)
        before = len(sent)
        await asyncio.sleep(1.2)
        assert len(sent) == before  # six intervals at rest: no keepalive
        assert (await transport.run("sleep 1.5", timeout=10)).ok  # busy, silent: kept alive
        assert len(sent) >= before + 3
        busy = len(sent)
        await asyncio.sleep(1.2)
        assert len(sent) == busy  # at rest again
        assert (await transport.run("echo still here", timeout=10)).stdout == "still here\n"
    finally:
        await connector.close()


@pytest.mark.root
@needs_root
async def test_a_process_probe_in_a_fenced_wait_over_ssh_finds_no_process_of_its_own(sshd: Sshd,
                                                                                     tmp_path: Path) -> None:
    """A health wait goes to the host on stdin, through the host's fence, as the engine sends it; there its process
    probe is plain ``pgrep -f`` (no -A): the shells that carry the script must not count as the app."""
    connector = ssh_connector(sshd)
    absent = f"graylift-no-such-process-{secrets.token_hex(4)}"
    present = f"graylift-probe-target-{secrets.token_hex(4)}"
    app = subprocess.Popen([present, "30"], executable="/bin/sleep")  # the app, by its command line
    try:
        transport = await connector.connect(ssh_host(sshd))
        for pattern, healthy in ((absent, False), (present, True)):
            wait = HostWait.of([ProcessProbe(pattern), CommandProbe(f"echo {pattern}")], retries=1, interval=0)
            assert wait is not None and "pgrep -A" not in wait.script
            command = fenced_command(str(tmp_path / "deploy"), "db1", 1, "sh -s", wait=10, reads_input=True)
            result = await transport.run(command, timeout=20, check=False, stdin=sealed_input(wait.script))
            attempts, seen = wait.read(result)
            assert (attempts, seen.ok) == (1, healthy), seen.detail
            if not healthy:
                assert f"no process matches {pattern!r}" in seen.detail
    finally:
        app.kill()
        app.wait()
        await connector.close()
