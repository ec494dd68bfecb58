"""NetboxInventory against a FAKE NetBox API server (tests/fakes/netbox_server.py), not a real NetBox."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from graylift.adapters.inventory.netbox import NetboxInventory, NetboxInventoryConfig
from graylift.adapters.registry import Build
from graylift.errors import ConfigError, InventoryError
from tests.fakes.netbox_server import FakeNetbox, make_record

TOKEN = "0123456789abcdef0123456789abcdef01234567"


def netbox_inventory(**fields: Any) -> NetboxInventory:
    """The inventory wiring builds from these fields (its token read from the environment)."""
    return NetboxInventory.from_config(NetboxInventoryConfig(**fields), Build("inventory"))


@pytest.fixture
def netbox() -> Iterator[FakeNetbox]:
    fake = FakeNetbox(token=TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETBOX_TOKEN", TOKEN)


def fleet(count: int, app: str = "shop") -> list[dict[str, Any]]:
    return [
        make_record(i, f"{app}-{i:02d}", ip=f"10.213.1.{i}/24", site="dc1" if i % 2 else "dc2",
                    rack=f"r{i % 3}", tags=(app, "prod", f"group-{'canary' if i == 1 else 'main'}"))
        for i in range(1, count + 1)
    ]


async def test_all_pages_are_read_and_mapped(netbox: FakeNetbox) -> None:
    netbox.devices = [*fleet(25), make_record(99, "other-01", ip="10.213.9.9/24", tags=("other",))]
    inv = netbox_inventory(url=netbox.url, page_size=10, group_from="tag-prefix:group-")
    hosts = await inv.hosts("shop", "prod")
    assert [h.name for h in hosts] == [f"shop-{i:02d}" for i in range(1, 26)]
    pages = [r for r in netbox.requests if r.path == "/api/dcim/devices/"]
    assert len(pages) == 3
    assert [r.params.get("offset", ["0"])[0] for r in pages] == ["0", "10", "20"]
    assert all(r.headers.get("authorization") == f"Token {TOKEN}" for r in pages)
    first = hosts[0]
    assert (first.address, first.group, first.port, first.user, first.in_service) == (
        "10.213.1.1", "canary", 22, "root", True)
    assert hosts[1].group == "main"
    assert first.zone == "dc1" and hosts[1].zone == "dc2"
    assert first.tags["rack"] == "r1" and first.tags["role"] == "app-server"
    assert first.tags["netbox_tags"] == "shop,prod,group-canary"
    assert first.tags["netbox_kind"] == "device" and first.tags["netbox_id"] == "1"


async def test_filters_are_templates_and_honoured(netbox: FakeNetbox) -> None:
    netbox.devices = [
        *fleet(3),
        make_record(10, "shop-stg-01", ip="10.213.2.1/24", tags=("shop", "staging")),
        make_record(11, "shop-db-01", ip="10.213.2.2/24", role="db", tags=("shop", "prod")),
        make_record(12, "shop-far-01", ip="10.213.2.3/24", site="dc3", tags=("shop", "prod")),
    ]
    inv = netbox_inventory(url=netbox.url, filters={"tag": ["{app}", "{env}"], "role": "app-server",
                                                   "site": ["dc1", "dc2"]})
    hosts = await inv.hosts("shop", "prod")
    assert [h.name for h in hosts] == ["shop-01", "shop-02", "shop-03"]
    assert netbox.requests[-1].params["tag"] == ["shop", "prod"]
    assert netbox.requests[-1].params["site"] == ["dc1", "dc2"]
    assert [h.group for h in hosts] == ["app-server"] * 3  # group_from defaults to the role


async def test_status_maps_to_in_service(netbox: FakeNetbox) -> None:
    netbox.devices = [make_record(i, f"shop-{s}", ip=f"10.213.3.{i}/24", tags=("shop",), status=s)
                      for i, s in enumerate(("active", "offline", "planned", "failed"), start=1)]
    hosts = await netbox_inventory(url=netbox.url).hosts("shop", "prod")
    assert {h.name: h.in_service for h in hosts} == {
        "shop-active": True, "shop-offline": False, "shop-planned": False, "shop-failed": False}
    assert hosts[1].tags["status"] == "offline"


async def test_virtual_machines_and_ipv6_and_custom_field_zone(netbox: FakeNetbox) -> None:
    netbox.devices = [make_record(1, "shop-bm-01", ip="10.213.4.1/24", tags=("shop",),
                                  custom_fields={"zone": "az-a"})]
    netbox.virtual_machines = [make_record(2, "shop-vm-01", ip6="fd00:213::2/64", tags=("shop",), kind="vm",
                                           cluster="kvm1", custom_fields={"zone": "az-b"})]
    inv = netbox_inventory(url=netbox.url, kinds=("devices", "virtual-machines"), zone_from="cf:zone")
    hosts = await inv.hosts("shop", "prod")
    assert [(h.name, h.address, h.zone) for h in hosts] == [
        ("shop-bm-01", "10.213.4.1", "az-a"), ("shop-vm-01", "fd00:213::2", "az-b")]
    assert hosts[1].tags["cluster"] == "kvm1" and hosts[1].tags["netbox_kind"] == "virtual-machine"


async def test_without_token_403_is_a_clear_error(netbox: FakeNetbox, monkeypatch: pytest.MonkeyPatch) -> None:
    netbox.devices = fleet(2)
    with pytest.raises(InventoryError) as err:
        await netbox_inventory(url=netbox.url, token_env=None).hosts("shop", "prod")
    text = str(err.value)
    assert "HTTP 403" in text and "Authentication credentials were not provided" in text
    assert netbox.url in text and "partial host list" in text
    monkeypatch.setenv("NETBOX_TOKEN", "wrong-token-value")
    with pytest.raises(InventoryError) as err:
        await netbox_inventory(url=netbox.url).hosts("shop", "prod")
    assert "Invalid token" in str(err.value) and "$NETBOX_TOKEN" in str(err.value)
    assert "wrong-token-value" not in str(err.value)


async def test_missing_token_variable(netbox: FakeNetbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETBOX_TOKEN")  # read when the inventory is built: before anything is asked
    with pytest.raises(ConfigError, match=r"^inventory\.token_env: the environment variable NETBOX_TOKEN is not set"):
        await netbox_inventory(url=netbox.url).hosts("shop", "prod")
    assert netbox.requests == []


async def test_v2_token_is_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNetbox(token="nbt_abc123.s3cr3t", devices=fleet(1))
    fake.start()
    try:
        monkeypatch.setenv("NB", "nbt_abc123.s3cr3t")
        hosts = await netbox_inventory(url=fake.url, token_env="NB").hosts("shop", "prod")
        assert [h.name for h in hosts] == ["shop-01"]
        assert fake.requests[0].headers.get("authorization") == "Bearer nbt_abc123.s3cr3t"
    finally:
        fake.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_down() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(InventoryError) as err:
        await netbox_inventory(url=url, timeout=2).hosts("shop", "prod")
    assert "failed: ConnectError" in str(err.value) and url in str(err.value) and "partial host list" in str(err.value)


async def test_timeout(netbox: FakeNetbox) -> None:
    netbox.devices, netbox.delay = fleet(1), 5.0
    started = time.monotonic()
    with pytest.raises(InventoryError, match="failed: ReadTimeout"):
        await netbox_inventory(url=netbox.url, timeout=0.3).hosts("shop", "prod")
    assert time.monotonic() - started < 4.0  # gave up long before the server would have answered


async def test_failure_on_a_later_page_fails_the_whole_read(netbox: FakeNetbox) -> None:
    netbox.devices, netbox.fail_status = fleet(25), {3: 502}
    with pytest.raises(InventoryError) as err:
        await netbox_inventory(url=netbox.url, page_size=10).hosts("shop", "prod")
    assert "HTTP 502" in str(err.value) and "offset=20" in str(err.value)
    assert "partial host list" in str(err.value)


async def test_list_changing_while_paging_fails(netbox: FakeNetbox) -> None:
    netbox.devices = fleet(25)

    def delete_one(fake: FakeNetbox, number: int) -> None:
        if number == 2:
            del fake.devices[0]  # everything shifts left: offset paging would miss a device

    netbox.on_request = delete_one
    with pytest.raises(InventoryError, match="changed while paging; retry"):
        await netbox_inventory(url=netbox.url, page_size=10).hosts("shop", "prod")


async def test_next_link_is_kept_on_the_configured_origin(netbox: FakeNetbox) -> None:
    netbox.devices, netbox.next_base = fleet(15), "https://netbox.elsewhere.invalid"
    hosts = await netbox_inventory(url=netbox.url, page_size=10).hosts("shop", "prod")
    assert len(hosts) == 15 and len(netbox.requests) == 2  # page 2 came from the fake, not elsewhere


async def test_active_device_without_primary_ip_is_an_error(netbox: FakeNetbox) -> None:
    netbox.devices = [*fleet(2), make_record(7, "shop-07", tags=("shop",))]
    with pytest.raises(InventoryError) as err:
        await netbox_inventory(url=netbox.url).hosts("shop", "prod")
    assert "'shop-07' (id 7)" in str(err.value) and "no primary IPv4/IPv6 address" in str(err.value)


async def test_offline_device_without_primary_ip_is_left_out(netbox: FakeNetbox,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    netbox.devices = [*fleet(2), make_record(7, "shop-07", tags=("shop",), status="planned")]
    with caplog.at_level(logging.WARNING):
        hosts = await netbox_inventory(url=netbox.url).hosts("shop", "prod")
    assert [h.name for h in hosts] == ["shop-01", "shop-02"]
    assert "shop-07" in caplog.text and "left out" in caplog.text


async def test_unknown_tag_and_no_match(netbox: FakeNetbox) -> None:
    netbox.devices = fleet(2)
    with pytest.raises(InventoryError) as err:
        await netbox_inventory(url=netbox.url).hosts("billing", "prod")
    assert "HTTP 400" in str(err.value) and "billing is not one of the available choices" in str(err.value)
    netbox.known_tags = {"billing"}
    with pytest.raises(InventoryError, match=r"no devices match tag=billing.*check the inventory filters"):
        await netbox_inventory(url=netbox.url).hosts("billing", "prod")


async def test_bad_names_and_duplicates(netbox: FakeNetbox) -> None:
    netbox.devices = [*fleet(1), make_record(5, "shop 05", ip="10.213.1.5/24", tags=("shop",))]
    with pytest.raises(InventoryError, match=r"device 'shop 05' \(id 5\): host name 'shop 05' is not a plain "
                                             r"name.*fix it in NetBox"):
        await netbox_inventory(url=netbox.url).hosts("shop", "prod")
    netbox.devices = fleet(1)
    netbox.virtual_machines = [make_record(2, "shop-01", ip="10.213.1.2/24", tags=("shop",), kind="vm")]
    with pytest.raises(InventoryError, match="duplicate host name 'shop-01'"):
        await netbox_inventory(url=netbox.url, kinds=("devices", "virtual-machines")).hosts("shop", "prod")


@pytest.mark.parametrize(("fields", "message"), [
    ({"group_from": "colour"},
     "group_from\n  must be one of role, site, rack, cluster, none, cf:FIELD, tag-prefix:PREFIX"),
    ({"zone_from": "tag-prefix:z"}, "zone_from\n  must be one of site, rack, cluster, none, cf:FIELD, got"),
    ({"kinds": ["switches"]}, "kinds.0\n  Input should be 'devices' or 'virtual-machines'"),
    ({"kinds": []}, "kinds\n  must list at least one item"),
    ({"url": "netbox.example.com"}, "url\n  must be an http:// or https:// URL"),
    ({"filters": {"tag": "{application}"}}, "unknown placeholder {application}; known placeholders: {app} {env}"),
    ({"page_size": 5000}, "page_size\n  must be a whole number from 1 to 1000"),
])
def test_the_model_checks_the_settings(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        NetboxInventoryConfig(**{"url": "http://netbox", **fields})
    assert message in str(caught.value), str(caught.value)
