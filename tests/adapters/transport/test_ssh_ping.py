"""SshTransport.ping against a real sshd: a round trip that runs nothing on the host, and a host that does not
answer (frozen, or its connection gone) is an error within the timeout, as a command's would be."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graylift.errors import CommandTimeout, HostUnreachable
from graylift.lab import services
from tests.adapters.conftest import Sshd, needs_root, parent_of, ssh_connector, ssh_host

pytestmark = [pytest.mark.root, needs_root]


def _descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the sshd processes of its connections, and what they run)."""
    parents = {int(p): parent_of(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found


@pytest.fixture
def counting_sshd(sshd: Sshd, tmp_path: Path) -> Iterator[tuple[Sshd, Path]]:
    """An sshd whose only key runs a forced command that appends a line to ``ran`` for every command: what
    the host ran is counted on the host."""
    ran = tmp_path / "ran"
    public = sshd.client_key.with_name(sshd.client_key.name + ".pub").read_text().strip()
    port = services.free_port()
    service = services.start_sshd(tmp_path / "sshd", port, authorized_key=f'command="echo ran >> {ran}" {public}')
    try:
        yield Sshd(port, tmp_path / "sshd" / "known_hosts", sshd.client_key, sshd.other_key, service), ran
    finally:
        services.stop_service(service)


def _ran(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_a_ping_is_answered_and_runs_nothing_on_the_host(counting_sshd: tuple[Sshd, Path]) -> None:
    sshd, ran = counting_sshd
    connector = ssh_connector(sshd)
    try:
        transport = await connector.connect(ssh_host(sshd))
        for _ in range(20):
            await transport.ping(timeout=5)
        assert _ran(ran) == 0
        await transport.run("true", timeout=10)  # the forced command runs instead: the count works
        assert _ran(ran) == 1
        conn = transport._conn
        assert conn is not None
        conn.close()  # a connection closed at rest: the ping opens a new one and is answered there
        await conn.wait_closed()
        await transport.ping(timeout=5)
        assert transport._conn is not conn and _ran(ran) == 1
    finally:
        await connector.close()


async def test_a_frozen_host_times_out_and_a_connection_lost_meanwhile_is_unreachable(sshd: Sshd) -> None:
    connector = ssh_connector(sshd)
    try:
        transport = await connector.connect(ssh_host(sshd))
        await transport.ping(timeout=5)
        frozen = _descendants(sshd.service.pid)  # this connection's sshd processes
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(CommandTimeout, match=r"h1: .*timed out after 1s"):
                await transport.ping(timeout=1)
            assert 0.9 < time.monotonic() - started < 3
            waiting = asyncio.create_task(transport.ping(timeout=10))
            await asyncio.sleep(0.3)
            for pid in frozen:  # the host's side of the connection dies while the ping waits
                os.kill(pid, signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(HostUnreachable, match=r"h1: connection to root@127\.0\.0\.1:.* lost"):
                await waiting
            assert time.monotonic() - started < 5
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        await transport.ping(timeout=5)  # the host itself is fine: a new connection answers
    finally:
        await connector.close()
