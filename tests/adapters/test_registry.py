"""The backends of each port, looked up by their config ``type`` (graylift.adapters.registry)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError

from graylift.adapters.inventory import INVENTORY
from graylift.adapters.monitoring import MONITORING
from graylift.adapters.registry import Backend, Build, Registry, secret
from graylift.adapters.traffic import TRAFFIC
from graylift.errors import ConfigError
from graylift.schema import Section, Text


class RedTraffic(Section):
    type: Literal["red"] = "red"
    colour: Text = "red"


class BlueTraffic(Section):
    type: Literal["blue"] = "blue"
    depth: int = 1


def red(cfg: RedTraffic, build: Build) -> str:
    return f"red adapter {cfg.colour} at {build.where}"


def blue(cfg: BlueTraffic, build: Build) -> str:
    return f"blue adapter {cfg.depth} for {build.app}"


COLOURS: Registry[str] = Registry([Backend(RedTraffic, red), Backend(BlueTraffic, blue)])


class Entries(BaseModel):
    items: list[COLOURS.union]  # type: ignore[name-defined]


def test_the_union_picks_the_model_by_type_and_build_the_adapter() -> None:
    entries = Entries.model_validate({"items": [{"type": "blue", "depth": 3}, {"type": "red"}]})
    assert entries.items == [BlueTraffic(depth=3), RedTraffic()]
    built = [COLOURS.build(entry, Build(f"items[{i}]", app="shop")) for i, entry in enumerate(entries.items)]
    assert built == ["blue adapter 3 for shop", "red adapter red at items[1]"]
    assert COLOURS.types == ["red", "blue"]
    with pytest.raises(ValidationError, match=r"does not match any of the expected tags: 'red', 'blue'"):
        Entries.model_validate({"items": [{"type": "green"}]})


def test_every_port_lists_its_backends_in_the_order_the_config_names_them() -> None:
    assert TRAFFIC.types == ["haproxy", "zookeeper", "nginx", "nginx_plus", "command", "etcd", "dubbo3", "nacos",
                             "consul", "eureka"]
    assert MONITORING.types == ["alertmanager", "zabbix", "command"]
    assert INVENTORY.types == ["builtin", "netbox", "http"]


@pytest.mark.parametrize("registry", [TRAFFIC, MONITORING, INVENTORY], ids=["traffic", "monitoring", "inventory"])
def test_each_backend_module_holds_its_model_and_its_from_config(registry: Registry[object]) -> None:
    for name, backend in registry.backends.items():
        module = backend.model.__module__
        assert backend.model.model_fields["type"].default == name  # the tag, also its default
        assert backend.build.__module__ == module, f"{name}: from_config lives with the model in {module}"
        assert module.startswith("graylift.adapters."), module


def test_secrets_are_read_from_the_environment_and_named_by_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PW", "s3cret")
    monkeypatch.setenv("EMPTY_PW", "")
    assert Build("traffic[2]").secret("SHOP_PW", "password_env") == "s3cret"
    assert Build("traffic[2]").secret(None, "password_env") is None
    with pytest.raises(ConfigError) as caught:
        Build("traffic[2]").secret("EMPTY_PW", "password_env")
    assert str(caught.value) == ("traffic[2].password_env: the environment variable EMPTY_PW is not set or empty; "
                                 "export EMPTY_PW=<secret> in the environment graylift runs in")
    with pytest.raises(ConfigError, match=r"^package\.token_env: the environment variable NOPE_X is not set"):
        secret("NOPE_X", "package.token_env")
    assert str(Build("inventory").fail("needs a store", "type")) == "inventory.type: needs a store"
