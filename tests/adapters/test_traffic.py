"""HAProxy (runtime API) and ZooKeeper (Dubbo override) switches against the real servers."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from urllib.parse import quote

import pytest
from kazoo.client import KazooClient

from graylift.adapters.haproxy import HaproxySwitch
from graylift.adapters.zookeeper import ZookeeperSwitch
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.lab import services

from .conftest import Haproxy

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
    switch = HaproxySwitch(socket=haproxy.socket, backend="one", drain_timeout=10, poll_interval=0.05)
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
    switch = HaproxySwitch(socket=haproxy.socket, backend="web", server_template="{host}", drain_timeout=2)
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
    switch = HaproxySwitch(socket=haproxy.socket, backend="web")
    with pytest.raises(TrafficError, match=r"web/nope.*haproxy config"):
        await switch.take_out(Host(name="nope", address="127.0.0.1"))
    with pytest.raises(TrafficError, match=r"nobackend/app1.*haproxy config"):
        await HaproxySwitch(socket=haproxy.socket, backend="nobackend").is_in(APP1)
    with pytest.raises(TrafficError, match=r"/nonexistent/haproxy\.sock"):
        await HaproxySwitch(socket="/nonexistent/haproxy.sock", backend="web").is_in(APP1)
    port = services.free_port()
    with pytest.raises(TrafficError, match=f"tcp://127.0.0.1:{port}"):
        await HaproxySwitch(socket=f"tcp://127.0.0.1:{port}", backend="web").is_in(APP1)
    dead = HaproxySwitch(socket=haproxy.socket, backend="dead", up_timeout=1, poll_interval=0.1)
    gone = Host(name="gone", address="127.0.0.1")
    with pytest.raises(TrafficError, match="not UP"):
        await dead.put_back(gone)
    assert not await dead.is_in(gone)


def _zk(service: services.Service) -> KazooClient:
    client = KazooClient(hosts=f"127.0.0.1:{service.port}", timeout=5)
    client.start(timeout=5)
    return client


async def test_zookeeper_take_out_put_back(zookeeper: services.Service) -> None:
    hosts = f"127.0.0.1:{zookeeper.port}"
    host = Host(name="order-1", address="10.213.0.11")
    switch = ZookeeperSwitch(hosts=hosts, service="com.acme.OrderService", port=20880,
                             propagation_seconds=0.3)
    assert switch.name == "zookeeper:/dubbo/com.acme.OrderService"
    reader = _zk(zookeeper)
    try:
        assert await switch.is_in(host) and not await switch.is_out(host)  # no providers registered at all
        started = time.monotonic()
        await switch.take_out(host)
        assert time.monotonic() - started >= 0.3  # waited for consumers to see it
        await switch.take_out(host)  # idempotent
        url = ("override://10.213.0.11:20880/com.acme.OrderService"
               "?category=configurators&disabled=true&dynamic=false&enabled=true")
        children = reader.get_children("/dubbo/com.acme.OrderService/configurators")
        assert children == [quote(url, safe="")]
        assert await switch.is_out(host) and not await switch.is_in(host)
        await switch.put_back(host)
        await switch.put_back(host)  # idempotent
        assert reader.get_children("/dubbo/com.acme.OrderService/configurators") == []
        assert await switch.is_in(host)
        # once providers register, is_in also needs this host among them
        other = quote("dubbo://10.213.0.12:20880/com.acme.OrderService?anyhost=true&side=provider", safe="")
        reader.create(f"/dubbo/com.acme.OrderService/providers/{other}", b"", makepath=True, ephemeral=True)
        assert not await switch.is_in(host)
        mine = quote("dubbo://10.213.0.11:20880/com.acme.OrderService?anyhost=true&side=provider", safe="")
        reader.create(f"/dubbo/com.acme.OrderService/providers/{mine}", b"", ephemeral=True)
        assert await switch.is_in(host)
        assert await switch.in_flight(host) is None
    finally:
        reader.stop()
        reader.close()
        await switch.close()


async def test_zookeeper_down_names_hosts() -> None:
    hosts = f"127.0.0.1:{services.free_port()}"
    switch = ZookeeperSwitch(hosts=hosts, service="com.acme.X", port=1, timeout=1)
    with pytest.raises(TrafficError, match=hosts):
        await switch.take_out(Host(name="h", address="10.213.0.1"))
    await switch.close()


async def _servers_state(switch: HaproxySwitch) -> list[list[str]]:
    """Every server's state row, without the columns that tick by themselves (last change time)."""
    answer = await switch.command(f"show servers state {switch.backend}")
    rows = [line.split() for line in answer.splitlines()[2:] if line.strip()]
    return [row[:12] + row[13:] for row in rows]  # srv_last_time_change is column 12


async def test_haproxy_preflight_reads_once_and_changes_nothing(haproxy: Haproxy) -> None:
    switch = HaproxySwitch(socket=haproxy.socket, backend="web", drain_timeout=1)
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
    report = await HaproxySwitch(socket=haproxy.socket, backend="nobackend").preflight([APP1, APP2])
    assert report.problems == ("haproxy:nobackend: every host: HAProxy has no backend nobackend with servers "
                               "(Can't find backend.); check the backend name",)
    report = await HaproxySwitch(socket="/nonexistent/haproxy.sock", backend="web").preflight([APP1])
    (problem,) = report.problems
    assert problem.startswith("haproxy:web: every host: cannot talk to the HAProxy runtime API at "
                              "/nonexistent/haproxy.sock (")
    assert problem.endswith("is HAProxy running with 'stats socket ... level admin'?") and "\n" not in problem
    report = await HaproxySwitch(socket=haproxy.operator_socket, backend="web").preflight([APP1])
    assert report.problems == (f"haproxy:web: every host: the socket {haproxy.operator_socket} is at level "
                               "operator; graylift sets server states, so use 'stats socket ... level admin'",)


def _tree(client: KazooClient, path: str = "/") -> dict[str, tuple[bytes, int]]:
    """Every node under ``path`` with its data and version (what a read-only check must leave alone)."""
    found: dict[str, tuple[bytes, int]] = {}
    for child in client.get_children(path):
        full = f"{path.rstrip('/')}/{child}"
        if full == "/zookeeper":
            continue
        data, stat = client.get(full)
        found[full] = (data, stat.version)
        found |= _tree(client, full)
    return found


async def test_zookeeper_preflight_one_listing_and_no_write(zookeeper: services.Service) -> None:
    hosts = f"127.0.0.1:{zookeeper.port}"
    service = "com.acme.PreflightService"
    h1, h2, h3 = (Host(name=f"pf-{i}", address=f"10.213.5.{i}") for i in (1, 2, 3))
    switch = ZookeeperSwitch(hosts=hosts, service=service, port=20880)
    reader = _zk(zookeeper)
    try:
        report = await switch.preflight([h1, h2])
        assert report.problems == ()
        assert report.notes == (f"zookeeper:/dubbo/{service}: no provider registered under /dubbo/{service}/"
                                "providers, so registration cannot be checked: only the override nodes are written "
                                "and verified (is service spelled as the providers register it?)",)
        for host in (h1, h2):
            node = quote(f"dubbo://{host.address}:20880/{service}?anyhost=true&side=provider", safe="")
            reader.create(f"/dubbo/{service}/providers/{node}", b"", makepath=True, ephemeral=True)
        await switch.take_out(h2)
        before = _tree(reader)
        report = await switch.preflight([h1, h2, h3])
        assert report.problems == (
            f"zookeeper:/dubbo/{service}: pf-3: no provider 10.213.5.3:20880 under /dubbo/{service}/providers "
            "(2 other(s) registered); is the app running and registered with this address, and are service and "
            "port right?",)
        name = f"zookeeper:/dubbo/{service}"
        assert report.notes == (f"{name}: 2 provider(s) registered under /dubbo/{service}/providers",
                                f"{name}: override already present (out): pf-2")
        assert _tree(reader) == before
        await switch.put_back(h2)
    finally:
        reader.stop()
        reader.close()
        await switch.close()
    down = ZookeeperSwitch(hosts=f"127.0.0.1:{services.free_port()}", service=service, port=1, timeout=1)
    (problem,) = (await down.preflight([h1])).problems
    assert problem.startswith(f"zookeeper:/dubbo/{service}: every host: cannot connect to ZooKeeper at 127.0.0.1:")
    await down.close()
