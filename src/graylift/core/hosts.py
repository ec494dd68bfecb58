"""A host as every inventory source reads it: one set of rules and one set of messages. Pure.

The built-in import (graylift YAML, Ansible INI and YAML), the HTTP JSON inventory and NetBox all hand
:func:`build_host` a mapping of the host fields; it checks them and builds the :class:`Host`, or raises one
InventoryError that starts with where the host was read (``hosts.yaml:4``, ``http inventory <url>:
hosts[2]``) and names the host and the field. No source builds a ``Host`` itself.

    name        a plain name (letters, digits, . _ + -), required
    address     an IP address or a DNS name, required (a host file may leave it out when the name is one)
    port        1-65535, a number or digits (default 22; null, here and below, is the default)
    user        a login name (default root)
    group       a plain name (default "default")
    tags        a mapping; every value becomes text (true/false, JSON for a list or a mapping)
    in_service  true/false (yes/no, on/off, 1/0 too; default true)

>>> build_host({"name": "web-1", "address": "10.0.0.1", "port": "2222"}, "hosts.yaml:2").port
2222
>>> build_host({"name": "web-1", "address": "10.0.0.1", "port": 0}, "hosts.yaml:2")
Traceback (most recent call last):
graylift.errors.InventoryError: hosts.yaml:2: host 'web-1' field 'port': expected a port number 1-65535, got 0
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from graylift.core.model import Host, is_plain_name
from graylift.errors import InventoryError

HOST_FIELDS = ("name", "address", "port", "user", "group", "tags", "in_service")
DEFAULT_GROUP = "default"
Where = str | Callable[[str], str]  # where the host was read; a callable gives it per field (the key's line)

_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_DNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def build_host(item: Any, where: Where, *, spelled: Mapping[str, str] | None = None,
               name_is_address: bool = False, advice: str = "") -> Host:
    """The Host ``item`` describes (its keys are HOST_FIELDS), or an InventoryError.

    ``spelled`` names a field as the source spells it (Ansible: ``address`` is ``ansible_host``);
    ``name_is_address``: a missing address is the name when that is an IP address or a dotted DNS name;
    ``advice`` ends every message (what to do in that source).
    """
    def at(field: str) -> str:
        return where if isinstance(where, str) else where(field)

    def fail(field: str, message: str) -> InventoryError:
        return InventoryError(f"{at(field)}: {message}" + (f"; {advice}" if advice else ""))

    if not isinstance(item, Mapping):
        raise fail("", f"expected a mapping with name and address, got {item!r:.100}")
    unknown = [key for key in item if key not in HOST_FIELDS]
    if unknown:
        raise fail(unknown[0], f"unknown field {unknown[0]!r}; expected one of {', '.join(HOST_FIELDS)}")
    if "name" not in item:
        raise fail("", "missing field 'name'")
    name = item["name"]
    if not isinstance(name, str) or not is_plain_name(name):
        raise fail("name", f"host name {name!r} is not a plain name (letters, digits, '.', '_', '+', '-'; "
                           "starting with a letter or digit)")
    names = {field: field for field in HOST_FIELDS} | dict(spelled or {})

    def given(field: str, default: Any) -> Any:  # null is "not given", as an absent key
        value = item.get(field)
        return default if value is None else value

    def wrong(field: str, expected: str, got: Any) -> InventoryError:
        return fail(field, f"host {name!r} field {names[field]!r}: expected {expected}, got {got!r}")

    address = item.get("address")
    if address is None and name_is_address and is_ip_or_dns(name):
        address = name
    if address is None or address == "":
        hint = f" (set {names['address']}=ADDRESS)" if name_is_address else ""
        raise fail("address", f"host {name!r} has no {names['address']!r}{hint}")
    if not isinstance(address, str) or not valid_address(address):
        raise wrong("address", "an IP address or DNS name", address)
    port = _whole_number(given("port", 22))
    if port is None or not 1 <= port <= 65535:
        raise wrong("port", "a port number 1-65535", item.get("port"))
    user = given("user", "root")
    if not isinstance(user, str) or not _USER.match(user):
        raise wrong("user", "a login name (letters, digits, '_', '.', '-')", user)
    group = given("group", DEFAULT_GROUP)
    if not isinstance(group, str) or not is_plain_name(group):
        raise wrong("group", "a plain group name", group)
    tags = given("tags", {})
    if not isinstance(tags, Mapping):
        raise wrong("tags", "a mapping of names to values", tags)
    in_service = parse_flag(given("in_service", True))
    if in_service is None:
        raise wrong("in_service", "true or false", item.get("in_service"))
    return Host(name=name, address=address, port=port, user=user, group=group,
                tags={str(k): tag_value(v) for k, v in tags.items()}, in_service=in_service)


def check_unique(hosts: Sequence[Host], where: Sequence[str], *, advice: str = "") -> list[Host]:
    """``hosts`` when no two share a name; ``where[i]`` is where host i was read."""
    first: dict[str, int] = {}
    for index, host in enumerate(hosts):
        if host.name in first:
            raise InventoryError(f"{where[index]}: duplicate host name {host.name!r} (first at "
                                 f"{where[first[host.name]]})" + (f"; {advice}" if advice else ""))
        first[host.name] = index
    return list(hosts)


def parse_flag(value: Any) -> bool | None:
    """True/False for a YAML or JSON boolean or true/yes/on/1, false/no/off/0 (any case); None otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def tag_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def valid_address(address: str) -> bool:
    """An IP address or a DNS name."""
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return bool(_DNS.match(address)) and ".." not in address and not address.endswith("-")


def is_ip_or_dns(name: str) -> bool:
    """An IP address, or a DNS name with a dot (``web-1`` alone is a name, not an address)."""
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return "." in name and valid_address(name)


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
