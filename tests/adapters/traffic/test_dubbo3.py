"""Dubbo3Switch against a REAL ZooKeeper (Debian zookeeper 3.8, started by the session fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import yaml
from kazoo.client import KazooClient

from graylift.adapters.traffic.dubbo3 import Dubbo3Switch, Dubbo3Traffic
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.lab import services

H1 = Host(name="p1", address="10.213.1.1")
H2 = Host(name="p2", address="10.213.1.2")
FOREIGN = {"side": "consumer", "addresses": ["10.213.9.9"], "parameters": {"timeout": "5000"}}


@pytest.fixture
def zk(zookeeper: services.Service) -> Iterator[KazooClient]:
    client = KazooClient(hosts=f"127.0.0.1:{zookeeper.port}")
    client.start(30)  # a busy machine can stall the session ZooKeeper for seconds; not what is tested
    yield client
    client.stop()
    client.close()


def _switch(zookeeper: services.Service, app: str, **kw: float) -> Dubbo3Switch:
    return Dubbo3Switch(Dubbo3Traffic(hosts=f"127.0.0.1:{zookeeper.port}", application=app, port=20880,
                                      **kw))  # type: ignore[arg-type]


def _rule(zk: KazooClient, app: str) -> dict | None:
    path = f"/dubbo/config/dubbo/{app}.configurators"
    return yaml.safe_load(zk.get(path)[0]) if zk.exists(path) else None


async def test_take_out_writes_v3_rule_and_put_back_deletes_it(zookeeper: services.Service,
                                                                zk: KazooClient) -> None:
    switch = _switch(zookeeper, "shop", propagation_seconds=0.2)
    assert switch.name == "dubbo3:/dubbo/config/dubbo/shop.configurators"
    await switch.take_out(H1)
    assert switch.propagation_seconds == 0.2  # the take-out step waits it, not the switch
    assert _rule(zk, "shop") == {"configVersion": "v3.0", "scope": "application", "key": "shop", "enabled": True,
                                 "configs": [{"side": "provider", "addresses": ["10.213.1.1:20880"],
                                              "parameters": {"disabled": "true"}}]}
    version = zk.exists("/dubbo/config/dubbo/shop.configurators").version
    await switch.take_out(H1)  # idempotent: no second entry, no write
    assert zk.exists("/dubbo/config/dubbo/shop.configurators").version == version
    assert await switch.is_out(H1) and not await switch.is_in(H1) and not await switch.is_out(H2)
    await switch.put_back(H1)
    assert not zk.exists("/dubbo/config/dubbo/shop.configurators")
    await switch.put_back(H1)
    assert await switch.is_in(H1)
    await switch.close()


async def test_other_entries_survive(zookeeper: services.Service, zk: KazooClient) -> None:
    path = "/dubbo/config/dubbo/cart.configurators"
    zk.create(path, yaml.safe_dump({"configVersion": "v3.0", "scope": "application", "key": "cart",
                                    "enabled": True, "configs": [FOREIGN]}).encode(), makepath=True)
    switch = _switch(zookeeper, "cart")
    await switch.take_out(H1)
    await switch.take_out(H2)
    assert [c["addresses"] for c in _rule(zk, "cart")["configs"]] == [["10.213.9.9"], ["10.213.1.1:20880"],
                                                                      ["10.213.1.2:20880"]]
    await switch.put_back(H1)
    assert await switch.is_in(H1) and await switch.is_out(H2)
    await switch.put_back(H2)
    assert _rule(zk, "cart")["configs"] == [FOREIGN]  # the node stays with the foreign entry
    await switch.close()


async def test_concurrent_writers_do_not_clobber_each_other(zookeeper: services.Service, zk: KazooClient) -> None:
    switches = [_switch(zookeeper, "race") for _ in range(4)]
    hosts = [Host(name=f"r{i}", address=f"10.213.2.{i}") for i in range(8)]
    await asyncio.gather(*(switches[i % 4].take_out(h) for i, h in enumerate(hosts)))
    assert sorted(c["addresses"][0] for c in _rule(zk, "race")["configs"]) == sorted(
        f"10.213.2.{i}:20880" for i in range(8))
    await asyncio.gather(*(switches[i % 4].put_back(h) for i, h in enumerate(hosts)))
    assert _rule(zk, "race") is None
    for s in switches:
        await s.close()


async def test_is_in_needs_registered_instance(zookeeper: services.Service, zk: KazooClient) -> None:
    zk.create("/services/pay/10.213.1.2:20880", b"{}", makepath=True)
    switch = _switch(zookeeper, "pay")
    assert not await switch.is_in(H1)  # instances exist, H1 not among them
    assert await switch.is_in(H2)
    rule = {"configVersion": "v3.0", "scope": "application", "key": "pay", "enabled": False,
            "configs": [{"side": "provider", "addresses": ["10.213.1.2:20880"], "parameters": {"disabled": True}}]}
    zk.create("/dubbo/config/dubbo/pay.configurators", yaml.safe_dump(rule).encode(), makepath=True)
    assert not await switch.is_out(H2)  # a disabled rule does not count
    with pytest.raises(TrafficError, match=r"enabled: false"):
        await switch.take_out(H2)
    await switch.close()


async def test_zookeeper_down_names_server() -> None:
    port = services.free_port()
    switch = Dubbo3Switch(Dubbo3Traffic(hosts=f"127.0.0.1:{port}", application="x", port=1, timeout=1))
    with pytest.raises(TrafficError, match=rf"127.0.0.1:{port}.*is it running"):
        await switch.is_out(H1)
    await switch.close()


def _versions(zk: KazooClient, *paths: str) -> dict[str, object]:
    return {p: (zk.get(p)[0], zk.exists(p).version) if zk.exists(p) else None for p in paths}


async def test_preflight_reads_rule_and_instances_once_and_writes_nothing(zookeeper: services.Service,
                                                                         zk: KazooClient) -> None:
    switch = _switch(zookeeper, "pfapp")
    h3 = Host(name="p3", address="10.213.1.3")
    report = await switch.preflight([H1, H2])
    assert report.problems == ()
    assert report.notes == ("dubbo3:/dubbo/config/dubbo/pfapp.configurators: no instance registered under "
                            "/services/pfapp, so registration cannot be checked: only the rule is written and "
                            "verified (is application spelled as Dubbo names it?)",)
    for host in (H1, H2):
        zk.create(f"/services/pfapp/{host.address}:20880", b"{}", makepath=True, ephemeral=True)
    await switch.take_out(H1)
    rule, instances = "/dubbo/config/dubbo/pfapp.configurators", "/services/pfapp"
    before = _versions(zk, rule, instances)
    report = await switch.preflight([H1, H2, h3])
    name = "dubbo3:/dubbo/config/dubbo/pfapp.configurators"
    assert report.problems == (f"{name}: p3: no instance 10.213.1.3:20880 under /services/pfapp (2 other(s) "
                               "registered); is the app running and registered with this address, and are "
                               "application and port right?",)
    assert report.notes == (f"{name}: 2 instance(s) registered under /services/pfapp",
                            f"{name}: already disabled by the rule: p1")
    assert _versions(zk, rule, instances) == before
    await switch.put_back(H1)

    zk.create("/dubbo/config/dubbo/broken.configurators", b"configs: [unclosed", makepath=True)
    broken = _switch(zookeeper, "broken")
    (problem,) = (await broken.preflight([H1])).problems
    await broken.close()
    assert problem.startswith("dubbo3:/dubbo/config/dubbo/broken.configurators: every host: the rule in ZooKeeper "
                              "is not valid YAML (")
    assert problem.endswith("fix or delete it in Dubbo Admin") and "\n" not in problem
    await switch.close()
