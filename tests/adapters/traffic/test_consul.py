"""ConsulSwitch against the FAKE Consul agent (tests/fakes/consul.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from graylift.adapters.traffic.consul import ConsulSwitch, ConsulTraffic
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.lab import services
from graylift.ports import Preflight
from tests.fakes.consul import FakeConsulAgent

H1 = Host(name="web1", address="127.0.0.1")


@pytest.fixture
def consul() -> Iterator[FakeConsulAgent]:
    fake = FakeConsulAgent(acl_token="acl-secret")
    fake.start()
    fake.register("orders-8080", "orders")
    yield fake
    fake.stop()


def _consul(fake: FakeConsulAgent, **kw: object) -> ConsulSwitch:
    args: dict = {"service": "orders", "port": 8080, "agent_url": fake.url.replace("127.0.0.1", "{address}"),
                  "service_id": "{service}-{port}", **kw}
    token = args.pop("token", "acl-secret")
    return ConsulSwitch(ConsulTraffic(**args), token=token)


async def test_consul_maintenance_round_trip(consul: FakeConsulAgent) -> None:
    switch = _consul(consul, reason="graylift 2.4.1", propagation_seconds=0.1)
    assert await switch.is_in(H1)
    await switch.take_out(H1)
    await switch.take_out(H1)
    check = consul.checks["_service_maintenance:orders-8080"]
    assert check["Status"] == "critical" and check["Notes"] == "graylift 2.4.1"
    assert await switch.is_out(H1) and not await switch.is_in(H1) and switch.propagation_seconds == 0.1
    await switch.put_back(H1)
    await switch.put_back(H1)
    assert "_service_maintenance:orders-8080" not in consul.checks and await switch.is_in(H1)
    consul.checks["service:orders-8080"]["Status"] = "critical"
    assert not await switch.is_in(H1)  # back, but its own check is failing


async def test_consul_errors(consul: FakeConsulAgent) -> None:
    with pytest.raises(TrafficError, match=r"HTTP 403.*token") as err:
        await _consul(consul, token="nope").take_out(H1)
    assert "nope" not in str(err.value)
    with pytest.raises(TrafficError, match=r"does not know service id 'orders-9'.*service_id"):
        await _consul(consul, port=9).take_out(H1)
    down = ConsulSwitch(ConsulTraffic(service="orders", agent_url=f"http://{{address}}:{services.free_port()}",
                                      timeout=2))
    with pytest.raises(TrafficError, match=r"Consul agent of web1 running"):
        await down.is_out(H1)


async def test_consul_preflight_one_call_per_agent_and_changes_nothing(consul: FakeConsulAgent) -> None:
    consul.register("orders-web2", "orders")
    switch = _consul(consul, service_id="{service}-{host}")
    web2, ghost = Host(name="web2", address="127.0.0.1"), Host(name="ghost", address="127.0.0.1")
    before, seen = copy.deepcopy(consul.checks), len(consul.requests)
    report = await switch.preflight([Host(name="web1", address="127.0.0.1"), web2, ghost])
    assert report.problems == (f"consul:orders: web1: the Consul agent at {consul.url} has no service id "
                               "'orders-web1'; is the service registered there, and does service_id match?",
                               f"consul:orders: ghost: the Consul agent at {consul.url} has no service id "
                               "'orders-ghost'; is the service registered there, and does service_id match?")
    assert report.notes == ("consul:orders: 1 of 3 hosts registered on 1 agent(s)",)
    assert [(r.method, r.path) for r in consul.requests[seen:]] == [("GET", "/v1/agent/services")]
    assert consul.checks == before
    assert await _consul(consul).preflight([H1]) == Preflight(
        notes=("consul:orders: 1 of 1 hosts registered on 1 agent(s)",))
    down = ConsulSwitch(ConsulTraffic(service="orders", agent_url=f"http://{{address}}:{services.free_port()}",
                                      timeout=2))
    (problem,) = (await down.preflight([H1])).problems
    assert problem.startswith("consul:orders: web1: GET /v1/agent/services failed: ConnectError")
    assert problem.endswith("is the Consul agent of web1 running at " + down.where(H1) + "?")
