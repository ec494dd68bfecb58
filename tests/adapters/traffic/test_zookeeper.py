"""ZookeeperSwitch (Dubbo override nodes) against a real ZooKeeper."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from kazoo.client import KazooClient

from graylift.adapters.traffic.zookeeper import ZookeeperSwitch, ZookeeperTraffic, provider_addresses
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.lab import services


def _zk(service: services.Service) -> KazooClient:
    client = KazooClient(hosts=f"127.0.0.1:{service.port}", timeout=5)
    client.start(timeout=30)  # a busy machine can stall the session ZooKeeper; not what is tested
    return client


async def test_zookeeper_take_out_put_back(zookeeper: services.Service) -> None:
    hosts = f"127.0.0.1:{zookeeper.port}"
    host = Host(name="order-1", address="10.213.0.11")
    switch = ZookeeperSwitch(ZookeeperTraffic(hosts=hosts, service="com.acme.OrderService", port=20880,
                                              propagation_seconds=0.3))
    assert switch.name == "zookeeper:/dubbo/com.acme.OrderService"
    reader = _zk(zookeeper)
    try:
        assert await switch.is_in(host) and not await switch.is_out(host)  # no providers registered at all
        await switch.take_out(host)
        assert switch.propagation_seconds == 0.3  # the take-out step waits it, not the switch
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
    switch = ZookeeperSwitch(ZookeeperTraffic(hosts=hosts, service="com.acme.X", port=1), timeout=1)
    with pytest.raises(TrafficError, match=hosts):
        await switch.take_out(Host(name="h", address="10.213.0.1"))
    await switch.close()


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
    switch = ZookeeperSwitch(ZookeeperTraffic(hosts=hosts, service=service, port=20880))
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
    down = ZookeeperSwitch(ZookeeperTraffic(hosts=f"127.0.0.1:{services.free_port()}", service=service, port=1),
                           timeout=1)
    (problem,) = (await down.preflight([h1])).problems
    assert problem.startswith(f"zookeeper:/dubbo/{service}: every host: cannot connect to ZooKeeper at 127.0.0.1:")
    await down.close()


def test_provider_addresses_read_the_same_every_time() -> None:
    """The providers' names are parsed once and remembered: a second read (new string objects, as every
    listing gives) answers the same, and names without an address:port never count."""
    names = [quote(f"dubbo://{address}:{port}/com.example.Order?side=provider", safe="")
             for address, port in (("10.0.0.1", 20880), ("[::1]", 20881), ("order-7.example", 20880))]
    names += ["not%zza-url", quote("dubbo://10.0.0.9/com.example.Order", safe=""), "", "dubbo%3A%2F%2F%3A1"]
    expected = {("10.0.0.1", 20880), ("::1", 20881), ("order-7.example", 20880)}
    assert provider_addresses(names) == expected
    assert provider_addresses(["".join(list(name)) for name in names]) == expected
    assert provider_addresses(names[:1]) == {("10.0.0.1", 20880)}
