"""HaproxySwitch (runtime API) against a real HAProxy."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

from graylift.adapters.traffic.haproxy import HaproxySwitch, HaproxyTraffic
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.lab import services
from tests.adapters.conftest import Haproxy

APP1 = Host(name="app1", address="127.0.0.1")


APP2 = Host(name="app2", address="127.0.0.1")


def _get(port: int, path: str = "/") -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.status, resp.read().decode()


async def _wait_up(switch: HaproxySwitch, host: Host) -> None:
    deadline = time.monotonic() + 5
    while not await switch.is_in(host):
        assert time.monotonic() < deadline, "HAProxy never saw the server UP"
        await asyncio.sleep(0.1)


async def test_haproxy_take_out_waits_for_open_request_then_maint(haproxy: Haproxy) -> None:
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="one", drain_timeout=10), poll_interval=0.05)
    assert switch.name == "haproxy:one"
    await _wait_up(switch, APP1)
    slow = asyncio.create_task(asyncio.to_thread(_get, haproxy.one_port, "/slow?s=1.5"))
    deadline = time.monotonic() + 3
    while await switch.in_flight(APP1) == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await switch.in_flight(APP1) == 1
    started = time.monotonic()
    await switch.take_out(APP1)
    waited = time.monotonic() - started
    assert slow.done(), "take_out returned while a request was still open"
    assert await slow == (200, "app1\n")
    assert 0.8 < waited < 5
    assert await switch.is_out(APP1) and not await switch.is_in(APP1)
    assert "MAINT" in await switch._stat_field("app1", "status")
    await switch.take_out(APP1)  # idempotent: already in maint, returns at once
    await switch.put_back(APP1)
    assert await switch.is_in(APP1) and not await switch.is_out(APP1)
    await switch.put_back(APP1)  # idempotent
    assert (await asyncio.to_thread(_get, haproxy.one_port))[0] == 200


async def test_haproxy_drained_server_gets_no_new_traffic(haproxy: Haproxy) -> None:
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web", server="{host}", drain_timeout=2))
    await _wait_up(switch, APP1)
    await _wait_up(switch, APP2)
    await switch.take_out(APP1)
    try:
        bodies = {(await asyncio.to_thread(_get, haproxy.web_port))[1] for _ in range(10)}
        assert bodies == {"app2\n"}
    finally:
        await switch.put_back(APP1)
    bodies = {(await asyncio.to_thread(_get, haproxy.web_port))[1] for _ in range(10)}
    assert bodies == {"app1\n", "app2\n"}


async def test_haproxy_errors_name_backend_server_and_socket(haproxy: Haproxy) -> None:
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web"))
    with pytest.raises(TrafficError, match=r"web/nope.*haproxy config"):
        await switch.take_out(Host(name="nope", address="127.0.0.1"))
    with pytest.raises(TrafficError, match=r"nobackend/app1.*haproxy config"):
        await HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="nobackend")).is_in(APP1)
    with pytest.raises(TrafficError, match=r"/nonexistent/haproxy\.sock"):
        await HaproxySwitch(HaproxyTraffic(socket="/nonexistent/haproxy.sock", backend="web")).is_in(APP1)
    port = services.free_port()
    with pytest.raises(TrafficError, match=f"tcp://127.0.0.1:{port}"):
        await HaproxySwitch(HaproxyTraffic(socket=f"tcp://127.0.0.1:{port}", backend="web")).is_in(APP1)
    dead = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="dead"), up_timeout=1, poll_interval=0.1)
    gone = Host(name="gone", address="127.0.0.1")
    with pytest.raises(TrafficError, match="not UP"):
        await dead.put_back(gone)
    assert not await dead.is_in(gone)


async def _servers_state(switch: HaproxySwitch) -> list[list[str]]:
    """Every server's state row, without the columns that tick by themselves (last change time)."""
    answer = await switch.command(f"show servers state {switch.cfg.backend}")
    rows = [line.split() for line in answer.splitlines()[2:] if line.strip()]
    return [row[:12] + row[13:] for row in rows]  # srv_last_time_change is column 12


async def test_haproxy_preflight_reads_once_and_changes_nothing(haproxy: Haproxy) -> None:
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web", drain_timeout=1))
    await _wait_up(switch, APP1)
    await _wait_up(switch, APP2)
    await switch.take_out(APP2)
    try:
        before = await _servers_state(switch)
        report = await switch.preflight([APP1, APP2])
        assert report.problems == ()
        assert report.notes == ("haproxy:web: 1 of 2 hosts in and UP", "haproxy:web: already in maint or drain: app2")
        nope = Host(name="nope", address="127.0.0.1")
        report = await switch.preflight([APP1, nope])
        assert report.problems == ("haproxy:web: nope: HAProxy has no server web/nope; add it to the haproxy "
                                   "config or fix the 'server' template in graylift's config",)
        assert await _servers_state(switch) == before
        assert await switch.is_out(APP2) and await switch.is_in(APP1)
    finally:
        await switch.put_back(APP2)
        await switch.close()


async def test_haproxy_preflight_problems_for_every_host(haproxy: Haproxy) -> None:
    report = await HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="nobackend")).preflight([APP1, APP2])
    assert report.problems == ("haproxy:nobackend: every host: HAProxy has no backend nobackend with servers "
                               "(Can't find backend.); check the backend name",)
    report = await HaproxySwitch(HaproxyTraffic(socket="/nonexistent/haproxy.sock", backend="web")).preflight([APP1])
    (problem,) = report.problems
    assert problem.startswith("haproxy:web: every host: cannot talk to the HAProxy runtime API at "
                              "/nonexistent/haproxy.sock (")
    assert problem.endswith("is HAProxy running with 'stats socket ... level admin'?") and "\n" not in problem
    report = await HaproxySwitch(HaproxyTraffic(socket=haproxy.operator_socket, backend="web")).preflight([APP1])
    assert report.problems == (f"haproxy:web: every host: the socket {haproxy.operator_socket} is at level "
                               "operator; graylift sets server states, so use 'stats socket ... level admin'",)


def _recording(switch: HaproxySwitch) -> list[tuple[str, str]]:
    """Every runtime API command the switch sends from now on, with HAProxy's answer."""
    sent: list[tuple[str, str]] = []
    command = switch.command

    async def recording(line: str) -> str:
        answer = await command(line)
        sent.append((line, answer))
        return answer

    switch.command = recording  # type: ignore[method-assign]
    return sent


async def test_haproxy_reads_a_servers_sessions_as_its_one_row(haproxy: Haproxy) -> None:
    """A server's sessions come from its own row of ``show stat`` (by its ids), not from the dump of every
    proxy and server: the answer and its parsing stay one row however many servers HAProxy has. The frontend
    named like the backend ("one") is not taken for it."""
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="one"))
    sent = _recording(switch)
    await _wait_up(switch, APP1)
    sent.clear()
    assert await switch.in_flight(APP1) == 0
    ((line, answer),) = sent
    rows = [row for row in answer.splitlines()[1:] if row.strip()]
    assert line.startswith("show stat ") and len(rows) == 1 and rows[0].startswith("one,app1,"), (line, rows)
    assert await switch._stat_field("app1", "svname") == "app1"


async def test_haproxy_ids_that_point_at_another_server_are_not_trusted(haproxy: Haproxy) -> None:
    """Ids learnt before HAProxy reloaded with other servers may name another server now: its row is never
    taken for this one's."""
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web"))
    await _wait_up(switch, APP1)
    await _wait_up(switch, APP2)
    switch._ids["app1"] = switch._ids["app2"]  # what a reload that swapped the two servers would leave
    assert await switch._stat_field("app1", "svname") == "app1"
    assert await switch._stat_field("app2", "svname") == "app2"
    assert await switch.in_flight(APP1) == 0 and await switch.is_in(APP1)


async def test_haproxy_a_fresh_switch_learns_the_ids_before_reading_one_row(haproxy: Haproxy) -> None:
    """A controller that took a release over reads a host's sessions (its quiet period) before any state: the
    switch learns the server's ids from `show servers state` first, then reads the one row."""
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="one"))
    sent = _recording(switch)
    assert await switch.in_flight(APP1) == 0
    assert [line.split()[:2] for line, _ in sent] == [["show", "servers"], ["show", "stat"]]
    assert sent[0][0] == "show servers state one" and sent[1][0] != "show stat"
    rows = [row for row in sent[1][1].splitlines()[1:] if row.strip()]
    assert len(rows) == 1 and rows[0].startswith("one,app1,")
