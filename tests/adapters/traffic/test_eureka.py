"""EurekaSwitch against the FAKE Eureka (tests/fakes/eureka.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from graylift.adapters.traffic.eureka import EurekaSwitch, EurekaTraffic
from graylift.core.model import Host
from graylift.errors import TrafficError
from tests.fakes.eureka import FakeEureka

H1 = Host(name="web1", address="127.0.0.1")


@pytest.fixture
def eureka() -> Iterator[FakeEureka]:
    fake = FakeEureka(username="eu", password="pw")
    fake.start()
    fake.register("orders", "web1:orders:8080", "127.0.0.1", 8080)
    yield fake
    fake.stop()


async def test_eureka_override_round_trip(eureka: FakeEureka) -> None:
    switch = EurekaSwitch(EurekaTraffic(url=eureka.url + "/eureka", app="orders", port=8080, username="eu",
                                        password_env="TEST_PASSWORD"), password="pw")
    assert await switch.is_in(H1)
    await switch.take_out(H1)
    await switch.take_out(H1)
    inst = eureka.instances[("ORDERS", "web1:orders:8080")]
    assert inst["status"] == inst["overriddenStatus"] == "OUT_OF_SERVICE"
    assert await switch.is_out(H1) and not await switch.is_in(H1)
    await switch.put_back(H1)
    await switch.put_back(H1)
    assert inst["status"] == "UP" and inst["overriddenStatus"] == "UNKNOWN"
    assert await switch.is_in(H1) and not await switch.is_out(H1)


async def test_eureka_errors(eureka: FakeEureka) -> None:
    with pytest.raises(TrafficError, match=r"HTTP 401"):
        await EurekaSwitch(EurekaTraffic(url=eureka.url + "/eureka", app="orders", port=8080)).take_out(H1)
    with pytest.raises(TrafficError, match=r"no instance 'web1:orders:9' of app ORDERS.*instance_id"):
        await EurekaSwitch(EurekaTraffic(url=eureka.url + "/eureka", app="orders", port=9, username="eu",
                                         password_env="TEST_PASSWORD"), password="pw").take_out(H1)


async def test_eureka_preflight_one_call_for_the_app(eureka: FakeEureka) -> None:
    eureka.register("orders", "web2:orders:8080", "127.0.0.2", 8080)
    switch = EurekaSwitch(EurekaTraffic(url=eureka.url + "/eureka", app="orders", port=8080, username="eu",
                                        password_env="TEST_PASSWORD"), password="pw")
    web2, ghost = Host(name="web2", address="127.0.0.2"), Host(name="ghost", address="127.0.0.9")
    await switch.take_out(web2)
    before, seen = copy.deepcopy(eureka.instances), len(eureka.requests)
    report = await switch.preflight([H1, web2, ghost])
    assert report.problems == (f"eureka:ORDERS: ghost: Eureka at {eureka.url}/eureka has no instance "
                               "'ghost:orders:8080' of app ORDERS; is ghost registered, and does instance_id match?",)
    assert report.notes == (f"eureka:ORDERS: 2 instance(s) of ORDERS registered at {eureka.url}/eureka",
                            "eureka:ORDERS: already OUT_OF_SERVICE: web2")
    assert [(r.method, r.path) for r in eureka.requests[seen:]] == [("GET", "/eureka/apps/ORDERS")]
    assert eureka.instances == before
    other = EurekaSwitch(EurekaTraffic(url=eureka.url + "/eureka", app="payments", port=8080, username="eu",
                                       password_env="TEST_PASSWORD"), password="pw")
    assert (await other.preflight([H1])).problems == (
        f"eureka:PAYMENTS: every host: Eureka at {eureka.url}/eureka has no app PAYMENTS; is the app registered, "
        "and is app spelled as it registers?",)
    (problem,) = (await EurekaSwitch(EurekaTraffic(url=eureka.url + "/eureka", app="orders",
                                                   port=8080)).preflight([H1])).problems
    assert problem.startswith("eureka:ORDERS: every host: GET /eureka/apps/ORDERS was refused with HTTP 401")
