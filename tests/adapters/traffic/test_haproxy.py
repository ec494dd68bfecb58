"""HaproxySwitch (runtime API) against a real HAProxy."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import urllib.request

import pytest

from graylift.adapters.traffic.haproxy import HaproxySwitch, HaproxyTraffic, ServerRow, ServersState
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.lab import services
from tests.adapters.conftest import Haproxy

APP1 = Host(name="app1", address="127.0.0.1")


APP2 = Host(name="app2", address="127.0.0.1")


# `show servers state` as HAProxy 2.6 answers it (two backends; columns cut after srv_port)
SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_port
3 one 1 app1 127.0.0.1 2 0 1 1 8001
3 one 2 app2 127.0.0.1 0 1 1 1 8002
4 two 1 app1 127.0.0.1 2 8 1 1 9001
4 two 2 app3 127.0.0.1 2
"""


def test_haproxy_servers_state_rows_are_the_backends_own() -> None:
    one = ServersState.parse(SERVERS_STATE, "one")
    assert sorted(one.lines) == ["app1", "app2"]
    assert one.row("app1") == ServerRow(admin=0, op=2, be_id="3")
    assert one.row("app2") == ServerRow(admin=1, op=0, be_id="3")
    assert one.row("app3") is None  # another backend's server
    two = ServersState.parse(SERVERS_STATE, "two")
    assert two.row("app1") == ServerRow(admin=8, op=2, be_id="4")
    assert two.row("app3") is None  # its line stops before the state columns
    assert ServersState.parse(SERVERS_STATE, "three").lines == {}


def test_haproxy_servers_state_without_a_header_has_no_servers() -> None:
    state = ServersState.parse("1\n3 one 1 app1 127.0.0.1 2 0 1 1 8001\n", "one")
    assert state.lines == {} and state.row("app1") is None
    assert ServersState.parse("No such backend.\n", "one").lines == {}


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


TICKING = {"srv_time_since_last_change", "srv_check_health"}  # the seconds since a change; the checks' counter


async def _servers_state(switch: HaproxySwitch) -> list[list[str]]:
    """Every server's state row, without the columns that change by themselves (``TICKING``)."""
    answer = await switch.command(f"show servers state {switch.cfg.backend}")
    header = answer.splitlines()[1][2:].split()
    rows = [line.split() for line in answer.splitlines()[2:] if line.strip()]
    return [[value for name, value in zip(header, row, strict=False) if name not in TICKING] for row in rows]


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


async def test_haproxy_reads_a_servers_sessions_from_its_backends_rows(haproxy: Haproxy) -> None:
    """A server's sessions come from its backend's rows of ``show stat`` (by the backend's id), not from the
    dump of every proxy: the frontend named like the backend ("web") is not taken for it."""
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web"))
    sent = _recording(switch)
    await _wait_up(switch, APP1)
    sent.clear()
    assert await switch.in_flight(APP1) == 0
    ((line, answer),) = sent
    rows = sorted(row.split(",")[:2] for row in answer.splitlines()[1:] if row.strip())
    assert line.startswith("show stat ") and line.endswith(" 4 -1") and rows == [["web", "app1"], ["web", "app2"]]
    assert await switch._stat_field("app1", "svname") == "app1"
    assert await switch._stat_field("app2", "svname") == "app2"


async def test_haproxy_a_backend_id_that_points_at_another_proxy_is_not_trusted(haproxy: Haproxy) -> None:
    """An id learnt before HAProxy reloaded with other proxies may name another backend now (here "one", whose
    server app1 has the same name): its rows are never taken for this backend's."""
    web = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web"))
    one = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="one"))
    await _wait_up(web, APP1)
    await _wait_up(one, APP1)
    await one.take_out(APP1)
    try:
        web._backend_id = one._backend_id  # what a reload that renumbered the proxies would leave
        assert await web._stat_field("app1", "pxname") == "web"
        assert "MAINT" not in await web._stat_field("app1", "status")
        assert await web._stat_field("app1", "pxname") == "web"  # the id was learnt again
        assert web._backend_id != one._backend_id
    finally:
        await one.put_back(APP1)


async def test_haproxy_hosts_waiting_at_once_share_each_read(haproxy: Haproxy) -> None:
    """A batch's hosts poll their servers at once: they share one read per poll (each answer parsed once),
    not one read per host. Twenty checks of two servers at once send one or two reads, and all agree."""
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web"))
    await _wait_up(switch, APP1)
    await _wait_up(switch, APP2)
    sent = _recording(switch)
    answers = await asyncio.gather(*(switch.is_in(host) for host in [APP1, APP2] * 10))
    assert answers == [True] * 20
    assert 1 <= len(sent) <= 2 and {line for line, _ in sent} == {"show servers state web"}, sent
    sent.clear()
    counts = await asyncio.gather(*(switch.in_flight(host) for host in [APP1, APP2] * 10))
    assert counts == [0] * 20 and 1 <= len(sent) <= 2, [line for line, _ in sent]


async def test_haproxy_a_shared_read_is_never_older_than_the_question(haproxy: Haproxy) -> None:
    """A caller is answered by a read sent after it asked: one that asks while an earlier read is on its way
    (answered before the server went to maint) waits for the next read and sees the maint."""
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web"))
    await _wait_up(switch, APP1)
    command = switch.command
    answered = asyncio.Event()

    async def slow(line: str) -> str:
        answer = await command(line)
        if not answered.is_set():
            answered.set()
            await asyncio.sleep(0.3)  # HAProxy has answered; the answer is still on its way to the callers
        return answer

    switch.command = slow  # type: ignore[method-assign]
    try:
        early = asyncio.create_task(switch.is_out(APP1))
        await answered.wait()
        await command("set server web/app1 state maint")
        assert await switch.is_out(APP1), "a read sent before the maint answered a caller that asked after it"
        assert await early is False
    finally:
        switch.command = command  # type: ignore[method-assign]
        await switch.put_back(APP1)


async def test_haproxy_a_fresh_switch_learns_the_backend_id_before_reading_its_rows(haproxy: Haproxy) -> None:
    """A controller that took a release over reads a host's sessions (its quiet period) before any state: the
    switch learns the backend's id from `show servers state` first, then reads the backend's rows."""
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="one"))
    sent = _recording(switch)
    assert await switch.in_flight(APP1) == 0
    assert [line.split()[:2] for line, _ in sent] == [["show", "servers"], ["show", "stat"]]
    assert sent[0][0] == "show servers state one" and sent[1][0] != "show stat"
    rows = [row for row in sent[1][1].splitlines()[1:] if row.strip()]
    assert len(rows) == 1 and rows[0].startswith("one,app1,")


def test_haproxy_two_event_loops_in_two_threads_share_no_read(haproxy: Haproxy) -> None:
    """`graylift serve` drives each release in a thread with its own event loop: two releases polling the same
    socket at once never get a read (a future) or a socket slot (a semaphore) of the other's loop."""
    errors: list[BaseException] = []

    def release() -> None:
        async def poll() -> None:
            switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web"))
            for _ in range(60):
                answers = await asyncio.gather(*(switch.is_in(host) for host in [APP1, APP2] * 4),
                                               *(switch.in_flight(host) for host in [APP1, APP2] * 4))
                assert answers == [True] * 8 + [0] * 8

        try:
            asyncio.run(asyncio.wait_for(poll(), 60))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=release) for _ in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the threads take turns often, as a busy server's do
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    finally:
        sys.setswitchinterval(interval)
    assert errors == [] and not any(t.is_alive() for t in threads), errors


async def test_haproxy_a_read_cut_short_leaves_no_caller_waiting(haproxy: Haproxy) -> None:
    """The task that sends a shared read is cancelled mid-read (its loop ends): its callers are cancelled with
    it, not left waiting, and the next caller gets a read of its own."""
    switch = HaproxySwitch(HaproxyTraffic(socket=haproxy.socket, backend="web"))
    await _wait_up(switch, APP1)
    command = switch.command
    started = asyncio.Event()

    async def stuck(line: str) -> str:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    switch.command = stuck  # type: ignore[method-assign]
    caller = asyncio.create_task(switch.is_in(APP1))
    await started.wait()
    for task in asyncio.all_tasks():
        if task.get_coro().__qualname__.endswith("SharedReads._run"):  # type: ignore[union-attr]
            task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 5)
    switch.command = command  # type: ignore[method-assign]
    assert await asyncio.wait_for(switch.is_in(APP1), 5)
