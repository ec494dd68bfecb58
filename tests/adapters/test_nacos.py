"""NacosSwitch against the FAKE Nacos (tests/fakes/nacos.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from graylift.adapters.nacos import NacosSwitch
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
    switch = NacosSwitch(url=nacos.url, service="orders", port=8080, username="nacos", password="s3cret-pw",
                         propagation_seconds=0.1)
    assert await switch.is_in(H1) and not await switch.is_out(H1)
    await switch.take_out(H1)
    await switch.take_out(H1)
    assert switch.last_wait_seconds == 0.1
    instance = nacos.instance("orders", "10.213.3.1", 8080)
    assert instance["enabled"] is False and instance["weight"] == 3.0 and instance["metadata"] == {"version": "1.2"}
    assert await switch.is_out(H1) and not await switch.is_in(H1)
    await switch.put_back(H1)
    await switch.put_back(H1)
    assert nacos.instance("orders", "10.213.3.1", 8080)["enabled"] is True
    assert await switch.is_in(H1)
    assert all("s3cret-pw" not in r.path + str(r.query) for r in nacos.requests if r.path != "/nacos/v1/auth/login")


async def test_expired_token_relogs_in(nacos: FakeNacos) -> None:
    switch = NacosSwitch(url=nacos.url, service="orders", port=8080, username="nacos", password="s3cret-pw")
    assert await switch.is_in(H1)
    nacos.tokens.clear()
    await switch.take_out(H1)
    assert await switch.is_out(H1)


async def test_errors(nacos: FakeNacos) -> None:
    bad = NacosSwitch(url=nacos.url, service="orders", port=8080, username="nacos", password="wrong")
    with pytest.raises(TrafficError, match=r"nacos:DEFAULT_GROUP@@orders.*HTTP 403.*credentials") as err:
        await bad.take_out(H1)
    assert "wrong" not in str(err.value)
    switch = NacosSwitch(url=nacos.url, service="orders", port=9999, username="nacos", password="s3cret-pw")
    with pytest.raises(TrafficError, match=r"no instance 10.213.3.1:9999 .*registered"):
        await switch.take_out(H1)
    down = NacosSwitch(url=f"http://127.0.0.1:{services.free_port()}", service="orders", port=8080, timeout=2)
    with pytest.raises(TrafficError, match=r"is Nacos running at"):
        await down.is_in(H1)
