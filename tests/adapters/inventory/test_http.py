"""HttpJsonInventory against a real local HTTP server answering JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from graylift.adapters.inventory.http import HttpInventoryConfig, HttpJsonInventory
from graylift.adapters.registry import Build
from graylift.core.model import Host
from graylift.errors import ConfigError, InventoryError
from tests.fakes.cmdb import FakeCmdb


def http_inventory(**fields: Any) -> HttpJsonInventory:
    """The inventory wiring builds from these fields (its token read from the environment)."""
    return HttpJsonInventory.from_config(HttpInventoryConfig(**fields), Build("inventory"))


@pytest.fixture
def endpoint() -> Iterator[FakeCmdb]:
    server = FakeCmdb()
    server.start()
    yield server
    server.stop()


HOSTS = [
    {"name": "web-01", "address": "10.213.5.1", "group": "canary", "tags": {"zone": "a", "rack": 3}},
    {"name": "web-02", "address": "web-02.example.internal", "port": 2222, "user": "deploy",
     "in_service": False},
]


async def test_list_and_object_forms(endpoint: FakeCmdb) -> None:
    endpoint.routes["/inv/shop/prod"] = (200, HOSTS)
    endpoint.routes["/inv/shop/staging"] = (200, {"hosts": HOSTS[:1]})
    inv = http_inventory(url=endpoint.url + "/inv/{app}/{env}")
    hosts = await inv.hosts("shop", "prod")
    assert hosts == [
        Host("web-01", "10.213.5.1", group="canary"),
        Host("web-02", "web-02.example.internal", port=2222, user="deploy", in_service=False),
    ]
    assert hosts[0].tags == {"zone": "a", "rack": "3"} and hosts[0].zone == "a"
    assert [h.name for h in await inv.hosts("shop", "staging")] == ["web-01"]
    assert endpoint.seen[0] == ("/inv/shop/prod", None)


async def test_bearer_token_from_env(endpoint: FakeCmdb, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint.routes["/inv"] = (200, HOSTS)
    monkeypatch.setenv("CMDB_TOKEN", "t0ken-value")
    await http_inventory(url=endpoint.url + "/inv", token_env="CMDB_TOKEN").hosts("shop", "prod")
    assert endpoint.seen[-1] == ("/inv", "Bearer t0ken-value")
    monkeypatch.delenv("CMDB_TOKEN")  # read when the inventory is built: before anything is asked
    with pytest.raises(ConfigError, match=r"^inventory\.token_env: the environment variable CMDB_TOKEN is not set"):
        await http_inventory(url=endpoint.url + "/inv", token_env="CMDB_TOKEN").hosts("shop", "prod")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"name": "web 9", "address": "10.0.0.9"}, "hosts[2]: host name 'web 9' is not a plain name"),
        ({"name": "web-09"}, "hosts[2]: host 'web-09' has no 'address'"),
        ({"name": "web-09", "address": "10.0.0.9", "port": 70000}, "hosts[2]: host 'web-09' field 'port'"),
        ({"name": "web-09", "address": "10.0.0.9", "user": "a b"}, "field 'user'"),
        ({"name": "web-09", "address": "10.0.0.9", "group": "x/y"}, "field 'group'"),
        ({"name": "web-09", "address": "10.0.0.9", "tags": ["a"]}, "field 'tags'"),
        ({"name": "web-09", "address": "10.0.0.9", "in_service": "maybe"}, "field 'in_service'"),
        ({"name": "web-09", "address": "10.0.0.9", "zone": "a"}, "hosts[2]: unknown field 'zone'"),
        ("web-09", "hosts[2]: expected a mapping with name and address"),
        ({"name": "web-01", "address": "10.0.0.9"}, "hosts[2]: duplicate host name 'web-01' (first at "),
    ],
)
async def test_validation_names_index_and_field(endpoint: FakeCmdb, item: Any, message: str) -> None:
    endpoint.routes["/inv"] = (200, [*HOSTS, item])
    with pytest.raises(InventoryError) as err:
        await http_inventory(url=endpoint.url + "/inv").hosts("shop", "prod")
    assert message in str(err.value)
    assert endpoint.url + "/inv" in str(err.value)


async def test_http_and_body_errors(endpoint: FakeCmdb) -> None:
    inv = http_inventory(url=endpoint.url + "/inv/{app}")
    with pytest.raises(InventoryError, match=r"HTTP 404.*no such inventory.*partial host list"):
        await inv.hosts("shop", "prod")
    endpoint.routes["/inv/shop"] = (200, b"<html>login</html>")
    with pytest.raises(InventoryError, match="returned non-JSON"):
        await inv.hosts("shop", "prod")
    endpoint.routes["/inv/shop"] = (200, {"servers": []})
    with pytest.raises(InventoryError, match="expected a JSON list of hosts"):
        await inv.hosts("shop", "prod")
    endpoint.routes["/inv/shop"] = (200, [])
    with pytest.raises(InventoryError, match="no hosts for app shop in env prod"):
        await inv.hosts("shop", "prod")
    with pytest.raises(ValidationError, match=r"unknown placeholder \{team\}; known placeholders: \{app\} \{env\}"):
        HttpInventoryConfig(url=endpoint.url + "/{team}")


async def test_unreachable() -> None:
    with pytest.raises(InventoryError, match="GET /inv failed: ConnectError"):
        await http_inventory(url="http://127.0.0.1:9/inv", timeout=2).hosts("shop", "prod")
