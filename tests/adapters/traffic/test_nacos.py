"""NacosSwitch against the FAKE Nacos (tests/fakes/nacos.py)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator

import pytest

from graylift.adapters.traffic.nacos import NacosSwitch, NacosTraffic
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.lab import services
from tests.fakes.nacos import FakeNacos

H1 = Host(name="n1", address="10.213.3.1")


@pytest.fixture(params=[False, True], ids=["nacos2", "nacos1-lists-disabled"])
def nacos(request: pytest.FixtureRequest) -> Iterator[FakeNacos]:
    fake = FakeNacos(username="nacos", password="s3cret-pw", list_disabled=request.param)
    fake.start()
    fake.register("orders", "10.213.3.1", 8080, weight=3.0, metadata={"version": "1.2"})
    yield fake
    fake.stop()


async def test_enabled_flag_round_trip_keeps_weight_and_metadata(nacos: FakeNacos) -> None:
    switch = NacosSwitch(NacosTraffic(url=nacos.url, service="orders", port=8080, username="nacos",
                                      propagation_seconds=0.1, password_env="TEST_PASSWORD"), password="s3cret-pw")
    assert await switch.is_in(H1) and not await switch.is_out(H1)
    await switch.take_out(H1)
    await switch.take_out(H1)
    assert switch.propagation_seconds == 0.1  # the take-out step waits it, not the switch
    instance = nacos.instance("orders", "10.213.3.1", 8080)
    assert instance["enabled"] is False and instance["weight"] == 3.0 and instance["metadata"] == {"version": "1.2"}
    assert await switch.is_out(H1) and not await switch.is_in(H1)
    await switch.put_back(H1)
    await switch.put_back(H1)
    assert nacos.instance("orders", "10.213.3.1", 8080)["enabled"] is True
    assert await switch.is_in(H1)
    assert all("s3cret-pw" not in r.path + str(r.query) for r in nacos.requests if r.path != "/nacos/v1/auth/login")


async def test_invalid_token_relogs_in(nacos: FakeNacos) -> None:
    switch = NacosSwitch(NacosTraffic(url=nacos.url, service="orders", port=8080, username="nacos",
                                      password_env="TEST_PASSWORD"), password="s3cret-pw")
    assert await switch.is_in(H1)
    nacos.tokens.clear()  # e.g. Nacos restarted with a new secret key
    await switch.take_out(H1)
    assert await switch.is_out(H1) and nacos.logins == 2


async def test_expired_token_relogs_in_once_for_parallel_calls(nacos: FakeNacos) -> None:
    nacos.token_ttl = 0.5
    switch = NacosSwitch(NacosTraffic(url=nacos.url, service="orders", port=8080, username="nacos",
                                      password_env="TEST_PASSWORD"), password="s3cret-pw")
    assert await switch.is_in(H1)
    first = switch.api.login.current
    await asyncio.sleep(0.7)  # the canary bakes; the accessToken's tokenTtl runs out
    nacos.token_ttl = 60
    await asyncio.gather(switch.take_out(H1), switch.is_out(H1), switch.preflight([H1]))
    expired = [r for r in nacos.requests if r.query.get("accessToken") == first]
    assert len(expired) >= 2  # the first call after the bake and the parallel ones were refused...
    assert nacos.logins == 2  # ...and one login renewed the token for all of them
    assert nacos.instance("orders", "10.213.3.1", 8080)["enabled"] is False


async def test_preflight_one_list_and_changes_nothing(nacos: FakeNacos) -> None:
    nacos.register("orders", "10.213.3.2", 8080)
    nacos.register("orders", "10.213.3.3", 8080)
    switch = NacosSwitch(NacosTraffic(url=nacos.url, service="orders", port=8080, username="nacos",
                                      password_env="TEST_PASSWORD"), password="s3cret-pw")
    h2, h3, ghost = (Host(name=f"n{i}", address=f"10.213.3.{i}") for i in (2, 3, 9))
    await switch.take_out(h2)
    before = copy.deepcopy(nacos.instances)
    seen = len(nacos.requests)
    report = await switch.preflight([H1, h2, h3, ghost])
    assert report.problems == ("nacos:DEFAULT_GROUP@@orders: n9: Nacos at " + nacos.url + " has no instance "
                               "10.213.3.9:8080 (cluster DEFAULT, namespace public); is n9 registered, and do "
                               "service/group/cluster/namespace/port match?",)
    assert report.notes == (f"nacos:DEFAULT_GROUP@@orders: 2 of 4 hosts registered and enabled in Nacos at {nacos.url}",
                            "nacos:DEFAULT_GROUP@@orders: already disabled: n2")
    calls = [(r.method, r.path) for r in nacos.requests[seen:]]
    assert calls.count(("GET", "/nacos/v1/ns/instance/list")) == 1
    assert all(method == "GET" for method, _ in calls)  # read only
    assert nacos.instances == before
    down = NacosSwitch(NacosTraffic(url=f"http://127.0.0.1:{services.free_port()}", service="orders", port=8080,
                                    timeout=2))
    (problem,) = (await down.preflight([H1])).problems
    assert problem.startswith("nacos:DEFAULT_GROUP@@orders: every host: GET /nacos/v1/ns/instance/list failed")


async def test_errors(nacos: FakeNacos) -> None:
    bad = NacosSwitch(NacosTraffic(url=nacos.url, service="orders", port=8080, username="nacos",
                                   password_env="TEST_PASSWORD"), password="wrong")
    with pytest.raises(TrafficError, match=r"nacos:DEFAULT_GROUP@@orders.*HTTP 403.*credentials") as err:
        await bad.take_out(H1)
    assert "wrong" not in str(err.value)
    switch = NacosSwitch(NacosTraffic(url=nacos.url, service="orders", port=9999, username="nacos",
                                      password_env="TEST_PASSWORD"), password="s3cret-pw")
    with pytest.raises(TrafficError, match=r"no instance 10.213.3.1:9999 .*registered"):
        await switch.take_out(H1)
    down = NacosSwitch(NacosTraffic(url=f"http://127.0.0.1:{services.free_port()}", service="orders", port=8080,
                                    timeout=2))
    with pytest.raises(TrafficError, match=r"is Nacos running at"):
        await down.is_in(H1)
