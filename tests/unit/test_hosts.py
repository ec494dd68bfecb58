"""build_host: the one set of host rules and messages every inventory source uses (graylift.core.hosts)."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from graylift.core import hosts
from graylift.core.hosts import build_host, check_unique, parse_flag, tag_value
from graylift.core.model import Host
from graylift.errors import InventoryError

OK = {"name": "web-1", "address": "10.0.0.1"}


def test_module_doctest() -> None:
    assert doctest.testmod(hosts).failed == 0


@pytest.mark.parametrize(("item", "expected"), [
    (OK, Host("web-1", "10.0.0.1")),
    ({**OK, "port": "2222", "user": "deploy", "group": "canary", "in_service": "no"},
     Host("web-1", "10.0.0.1", port=2222, user="deploy", group="canary", in_service=False)),
    ({**OK, "port": None, "user": None, "group": None, "tags": None, "in_service": None}, Host("web-1", "10.0.0.1")),
    ({**OK, "tags": {"zone": "a", "debug": False, "weight": 3, "list": [1, 2], "none": None}},
     Host("web-1", "10.0.0.1", tags={"zone": "a", "debug": "false", "weight": "3", "list": "[1, 2]", "none": ""})),
    ({"name": "db.example.com", "address": "db.example.com"}, Host("db.example.com", "db.example.com")),
])
def test_valid_hosts(item: dict[str, Any], expected: Host) -> None:
    assert build_host(item, "src") == expected


@pytest.mark.parametrize(("item", "message"), [
    ("web-1", "src: expected a mapping with name and address, got 'web-1'"),
    ({**OK, "zone": "a"}, "src: unknown field 'zone'; expected one of name, address, port, user, group, tags, "
                          "in_service"),
    ({"address": "10.0.0.1"}, "src: missing field 'name'"),
    ({"name": "web 1", "address": "10.0.0.1"}, "src: host name 'web 1' is not a plain name (letters, digits, '.', "
                                               "'_', '+', '-'; starting with a letter or digit)"),
    ({"name": "web-1"}, "src: host 'web-1' has no 'address'"),
    ({**OK, "address": "10..0.1"}, "src: host 'web-1' field 'address': expected an IP address or DNS name, "
                                   "got '10..0.1'"),
    ({**OK, "address": 10}, "src: host 'web-1' field 'address': expected an IP address or DNS name, got 10"),
    ({**OK, "port": 70000}, "src: host 'web-1' field 'port': expected a port number 1-65535, got 70000"),
    ({**OK, "port": True}, "src: host 'web-1' field 'port': expected a port number 1-65535, got True"),
    ({**OK, "user": "a b"}, "src: host 'web-1' field 'user': expected a login name (letters, digits, '_', '.', "
                            "'-'), got 'a b'"),
    ({**OK, "group": "x/y"}, "src: host 'web-1' field 'group': expected a plain group name, got 'x/y'"),
    ({**OK, "tags": ["a"]}, "src: host 'web-1' field 'tags': expected a mapping of names to values, got ['a']"),
    ({**OK, "in_service": "maybe"}, "src: host 'web-1' field 'in_service': expected true or false, got 'maybe'"),
])
def test_every_rule_has_one_message(item: Any, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        build_host(item, "src")
    assert str(caught.value) == message


def test_where_per_field_spelling_and_advice() -> None:
    lines = {"name": 2, "port": 4}
    with pytest.raises(InventoryError) as caught:
        build_host({**OK, "port": "ssh"}, lambda field: f"hosts.yaml:{lines.get(field, 2)}")
    assert str(caught.value).startswith("hosts.yaml:4: host 'web-1' field 'port'")
    with pytest.raises(InventoryError) as caught:
        build_host({"name": "web-1", "port": "x"}, "inv:3", spelled={"address": "ansible_host"},
                   name_is_address=True, advice="fix it there")
    assert str(caught.value) == "inv:3: host 'web-1' has no 'ansible_host' (set ansible_host=ADDRESS); fix it there"
    assert build_host({"name": "10.0.0.9"}, "inv:3", name_is_address=True).address == "10.0.0.9"


def test_check_unique_names_both_places() -> None:
    a, b = Host("web-1", "10.0.0.1"), Host("web-2", "10.0.0.2")
    assert check_unique([a, b], ["x:1", "x:2"]) == [a, b]
    with pytest.raises(InventoryError) as caught:
        check_unique([a, b, a], ["x:1", "x:2", "x:3"], advice="no partial list")
    assert str(caught.value) == "x:3: duplicate host name 'web-1' (first at x:1); no partial list"


@pytest.mark.parametrize(("value", "flag"), [(True, True), ("Yes", True), ("on", True), (1, True), ("0", False),
                                             ("off", False), (False, False), ("maybe", None), (None, None)])
def test_parse_flag(value: Any, flag: bool | None) -> None:
    assert parse_flag(value) is flag


def test_tag_value() -> None:
    assert [tag_value(v) for v in (True, None, {"b": 1, "a": 2}, 1.5)] == ["true", "", '{"a": 2, "b": 1}', "1.5"]
