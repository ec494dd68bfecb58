"""Inventories read over HTTP: a JSON host list at a URL, and a once-per-release cache for any inventory.

``HttpJsonInventory`` GETs a URL template (``{app}``, ``{env}``) that answers either a JSON list of hosts or
``{"hosts": [...]}``, each host with the fields of the built-in YAML import: name, address, port?, user?,
group?, tags?, in_service?. Every error is an InventoryError naming the URL (and, for bad data, the host
index and field); no release runs on a partial host list. A bearer token, if any, is read from an
environment variable and never appears in a message.

The helpers here (``build_host``, ``get_json``, ``safe_url``) are shared with the NetBox adapter.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from graylift.adapters.inventory.hostfile import parse_flag, tag_value
from graylift.core.model import Host, is_plain_name
from graylift.core.template import render
from graylift.errors import InventoryError
from graylift.ports import Inventory

HOST_FIELDS = ("name", "address", "port", "user", "group", "tags", "in_service")
DEFAULT_GROUP = "default"
NO_PARTIAL = "no release runs on a partial host list"
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_DNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")


# ---------------------------------------------------------------------- shared helpers
def safe_url(url: str | httpx.URL) -> str:
    """The URL as shown in messages: without user:password."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else str(parsed)


def token_from_env(name: str | None, source: str) -> str | None:
    """Read a secret from the environment variable ``name`` (None: no token)."""
    if not name:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise InventoryError(
            f"{source}: the API token environment variable {name} is not set or empty; "
            f"export {name}=<token> before running graylift"
        )
    return value


async def get_json(client: httpx.AsyncClient, url: str, *, source: str, auth_hint: str) -> Any:
    """GET ``url`` and decode JSON; every failure becomes an InventoryError naming the URL and status."""
    shown = safe_url(url)
    try:
        response = await client.get(url)
    except httpx.TimeoutException as exc:
        raise InventoryError(
            f"{source}: GET {shown} timed out ({type(exc).__name__}); {NO_PARTIAL}"
        ) from exc
    except httpx.ConnectError as exc:
        raise InventoryError(f"{source}: cannot connect for GET {shown}: {exc}; {NO_PARTIAL}") from exc
    except httpx.HTTPError as exc:
        raise InventoryError(f"{source}: GET {shown} failed: {type(exc).__name__}: {exc}; {NO_PARTIAL}") from exc
    if response.status_code != 200:
        detail = _detail(response)
        hint = f" ({auth_hint})" if response.status_code in (401, 403) else ""
        raise InventoryError(
            f"{source}: GET {shown} answered HTTP {response.status_code}{hint}: {detail}; {NO_PARTIAL}"
        )
    try:
        return response.json()
    except ValueError as exc:
        raise InventoryError(
            f"{source}: GET {shown} did not answer JSON ({response.headers.get('content-type', '?')}): "
            f"{response.text[:200]!r}; {NO_PARTIAL}"
        ) from exc


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return repr(response.text[:200]) if response.text else "(empty body)"
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:300]


def valid_address(address: str) -> bool:
    """An IP address or a DNS name."""
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return bool(_DNS.match(address)) and ".." not in address and not address.endswith("-")


def build_host(item: Any, where: str) -> Host:
    """Validate one host mapping (the built-in YAML import's fields); ``where`` prefixes every message."""
    if not isinstance(item, dict):
        raise InventoryError(f"{where}: expected an object with name and address, got {item!r:.100}")
    unknown = [k for k in item if k not in HOST_FIELDS]
    if unknown:
        raise InventoryError(f"{where}: unknown field {unknown[0]!r}; expected one of {', '.join(HOST_FIELDS)}")
    name = item.get("name")
    if not isinstance(name, str) or not is_plain_name(name):
        raise InventoryError(
            f"{where} field 'name': {name!r} is not a plain host name "
            "(letters, digits, '.', '_', '+', '-'; starting with a letter or digit)"
        )
    where = f"{where} ({name})"

    def fail(fld: str, expected: str) -> InventoryError:
        return InventoryError(f"{where} field {fld!r}: expected {expected}, got {item.get(fld)!r}")

    address = item.get("address")
    if not isinstance(address, str) or not address:
        raise fail("address", "an IP address or DNS name")
    if not valid_address(address):
        raise fail("address", "an IP address or DNS name")
    port = item.get("port", 22)
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise fail("port", "a port number 1-65535")
    user = item.get("user", "root")
    if not isinstance(user, str) or not _USER.match(user):
        raise fail("user", "a login name (letters, digits, '_', '.', '-')")
    group = item.get("group", DEFAULT_GROUP)
    if not isinstance(group, str) or not is_plain_name(group):
        raise fail("group", "a plain group name")
    tags = item.get("tags") or {}
    if not isinstance(tags, dict) or any(isinstance(v, (dict, list)) for v in tags.values()):
        raise fail("tags", "an object of names to plain values")
    in_service = parse_flag(item.get("in_service", True))
    if in_service is None:
        raise fail("in_service", "true or false")
    return Host(
        name=name,
        address=address,
        port=port,
        user=user,
        group=group,
        tags={str(k): tag_value(v) for k, v in tags.items()},
        in_service=in_service,
    )


def check_unique(hosts: list[Host], source: str) -> list[Host]:
    seen: set[str] = set()
    for host in hosts:
        if host.name in seen:
            raise InventoryError(f"{source}: duplicate host name {host.name!r}; {NO_PARTIAL}")
        seen.add(host.name)
    return hosts


# ---------------------------------------------------------------------- HTTP JSON inventory
class HttpJsonInventory:
    """GET ``url`` (a template with ``{app}`` and ``{env}``) -> a list of hosts or ``{"hosts": [...]}``."""

    def __init__(
        self,
        *,
        url: str,
        token_env: str | None = None,
        timeout: float = 10.0,
        verify_tls: bool = True,
    ) -> None:
        self.url_template = url
        self.token_env = token_env
        self.timeout = timeout
        self.verify_tls = verify_tls

    def url_for(self, app: str, env: str) -> str:
        return render(self.url_template, {"app": app, "env": env})

    async def hosts(self, app: str, env: str) -> list[Host]:
        url = self.url_for(app, env)
        source = f"http inventory {safe_url(url)}"
        token = token_from_env(self.token_env, source)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        hint = f"check the token in ${self.token_env}" if self.token_env else "set token_env to send a token"
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout, verify=self.verify_tls) as client:
            data = await get_json(client, url, source=source, auth_hint=hint)
        items = data["hosts"] if isinstance(data, dict) and "hosts" in data else data
        if not isinstance(items, list):
            raise InventoryError(
                f"{source}: expected a JSON list of hosts or {{\"hosts\": [...]}}, got {type(data).__name__}; "
                f"{NO_PARTIAL}"
            )
        if not items:
            raise InventoryError(f"{source}: no hosts for app {app} in env {env}")
        hosts = [build_host(item, f"{source}: hosts[{i}]") for i, item in enumerate(items)]
        return check_unique(hosts, source)


# ---------------------------------------------------------------------- cache
class CachedInventory:
    """Wraps an inventory so that each (app, env) is fetched once (or once per ``ttl`` seconds).

    Concurrent callers share one fetch; errors are not cached. Make one per release (ttl None), so the
    plan and every step of that release see the same host list even if the CMDB changes meanwhile.
    """

    def __init__(self, inner: Inventory, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, list[Host]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def hosts(self, app: str, env: str) -> list[Host]:
        key = (app, env)
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._cache.get(key)
            if cached and (self.ttl is None or self.clock() - cached[0] < self.ttl):
                return list(cached[1])
            hosts = await self.inner.hosts(app, env)
            self._cache[key] = (self.clock(), list(hosts))
            return list(hosts)

    def forget(self, app: str | None = None, env: str | None = None) -> None:
        """Drop cached lists (all, or those matching app/env)."""
        for key in list(self._cache):
            if (app is None or key[0] == app) and (env is None or key[1] == env):
                del self._cache[key]
