"""The SSH connector's connection limit, without a server: connections are fakes that count what is asked of
them. (test_ssh_local.py runs the same limit against a real sshd.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from graylift.adapters.transport.ssh import SshConfig, SshConnector, SshTransport
from graylift.core.model import Host


class FakeConnection:
    """What the connector asks of an asyncssh connection to keep or close it; every look is counted."""

    looks = 0

    def __init__(self) -> None:
        self.closed = False

    def is_closed(self) -> bool:
        FakeConnection.looks += 1
        return self.closed

    def close(self) -> None:
        self.closed = True

    def set_keepalive(self, interval: float | None = None, count_max: int | None = None) -> None:
        self.keepalive = interval

    async def wait_closed(self) -> None:
        return None


class FakeConnector(SshConnector):
    def __init__(self, limit: int) -> None:
        super().__init__(SshConfig(known_hosts=Path("/dev/null"), max_connections=limit))
        self.opened: list[str] = []

    async def open_connection(self, host: Host) -> FakeConnection:  # type: ignore[override]
        self.opened.append(host.name)
        return FakeConnection()


def hosts(n: int) -> list[Host]:
    return [Host(f"h{i:04d}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(n)]


async def use(transport: SshTransport) -> None:
    """One use of a transport, as a command makes it (busy while it runs, idle after)."""
    transport.busy += 1
    await transport.ensure_connected()
    await transport._done()


async def test_the_least_recently_used_idle_connection_makes_room() -> None:
    connector = FakeConnector(limit=3)
    a, b, c, d = hosts(4)
    ta, tb, tc = [await connector.connect(h) for h in (a, b, c)]
    await use(ta)  # a is now the most recently used: b goes first, then c
    td = await connector.connect(d)
    assert [t.connected for t in (ta, tb, tc, td)] == [True, False, True, True]
    await use(tb)  # reconnects, closing c (now the least recently used)
    assert [t.connected for t in (ta, tb, tc, td)] == [True, True, False, True]
    assert connector.opened == ["h0000", "h0001", "h0002", "h0003", "h0001"]


async def test_a_busy_connection_is_never_closed_to_make_room() -> None:
    connector = FakeConnector(limit=2)
    a, b, c = hosts(3)
    ta, tb = await connector.connect(a), await connector.connect(b)
    ta.busy += 1  # a command runs on a (the least recently used)
    tc = await connector.connect(c)
    assert ta.connected and not tb.connected and tc.connected
    tb.busy += 1
    waiting = asyncio.create_task(tb.ensure_connected())  # a, c busy: b waits for a slot
    tc.busy += 1
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await tc._done()  # c goes idle: b takes its place
    await asyncio.wait_for(waiting, 1)
    assert ta.connected and tb.connected and not tc.connected


async def test_making_room_looks_at_a_few_connections_however_many_are_open() -> None:
    """1000 idle connections open at the limit: each new one closes the oldest after a look at a handful, not
    at all 1000 (a scan of every connection at every connect grew a 1000-host release's CPU with N^2)."""
    connector = FakeConnector(limit=1000)
    fleet = hosts(1100)
    for h in fleet[:1000]:
        await connector.connect(h)
    FakeConnection.looks = 0
    for h in fleet[1000:]:
        await connector.connect(h)
    assert FakeConnection.looks <= 5 * 100
    assert [connector._transports[(h.address, h.port, h.user)].connected for h in fleet[:100]] == [False] * 100
