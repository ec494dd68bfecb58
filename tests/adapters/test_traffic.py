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
