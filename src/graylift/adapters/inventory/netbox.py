"""NetBox as the CMDB: devices and/or virtual machines, read over the REST API.

``GET {url}/api/dcim/devices/`` and ``/api/virtualization/virtual-machines/`` with the configured filters
(templates with ``{app}``/``{env}``, e.g. ``tag: "{app}"``), following ``next`` until the last page; the
result must hold exactly ``count`` objects, or the read fails (NetBox changed while paging: retry).

Mapping: name -> Host.name (must be a plain name); ``primary_ip4`` (else ``primary_ip6``) without its
prefix length -> address; ``status`` in ``in_service_statuses`` (default: active) -> in service, any
other status (offline, planned, failed, ...) -> out of service (maintenance: the release skips it);
group from the role slug, site, rack, a custom field or a tag prefix (``tag-prefix:group-``); zone from
site, rack or a custom field. Tags: site, rack, role, status, cluster, netbox_kind, netbox_id,
netbox_tags (comma-separated tag slugs) and zone.

A device that is in service but has no primary IP is an error naming it (a release must never silently
miss a host); one that is out of service and has no IP is left out with a warning (it would be skipped
anyway). The token is read from an environment variable and is never logged; v2 tokens (``nbt_...``) are
sent as ``Bearer``, v1 tokens as ``Token``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from graylift.adapters._http import call, safe_url
from graylift.adapters.inventory.http import NO_PARTIAL, token_from_env
from graylift.core.hosts import DEFAULT_GROUP, build_host, check_unique
from graylift.core.model import Host
from graylift.core.template import render
from graylift.errors import ConfigError, InventoryError

log = logging.getLogger(__name__)

ENDPOINTS = {"devices": "api/dcim/devices/", "virtual-machines": "api/virtualization/virtual-machines/"}
_KIND_NAME = {"devices": "device", "virtual-machines": "virtual machine"}
GROUP_SOURCES = ("role", "site", "rack", "cluster", "none")
ZONE_SOURCES = ("site", "rack", "cluster", "none")


def _check_source(value: str, allowed: Sequence[str], fld: str) -> str:
    if value in allowed or (value.startswith("cf:") and len(value) > 3):
        return value
    if fld == "group_from" and value.startswith("tag-prefix:") and len(value) > len("tag-prefix:"):
        return value
    extra = ", tag-prefix:PREFIX" if fld == "group_from" else ""
    raise ConfigError(f"unknown {fld} {value!r}; expected one of {', '.join(allowed)}, cf:FIELD{extra}",
                      field=f"inventory.{fld}")


def _slug(ref: Any, key: str = "slug") -> str:
    """The slug (or name) of a nested NetBox object, '' for null."""
    if isinstance(ref, Mapping):
        return str(ref.get(key) or ref.get("name") or "")
    return "" if ref is None else str(ref)


class NetboxInventory:
    """The Inventory port over a NetBox instance (v3.6+ / v4 REST API)."""

    def __init__(
        self,
        *,
        url: str,
        token_env: str | None = "NETBOX_TOKEN",
        kinds: Sequence[str] = ("devices",),
        filters: Mapping[str, str | Sequence[str]] | None = None,
        group_from: str = "role",
        zone_from: str = "site",
        in_service_statuses: Sequence[str] = ("active",),
        user: str = "root",
        port: int = 22,
        page_size: int = 200,
        timeout: float = 10.0,
        verify_tls: bool = True,
    ) -> None:
        self.base = httpx.URL(url.rstrip("/") + "/")
        if self.base.scheme not in ("http", "https") or not self.base.host:
            raise ConfigError(f"NetBox url {url!r} must be http(s)://HOST[:PORT][/PATH]", field="inventory.url")
        unknown = [k for k in kinds if k not in ENDPOINTS]
        if unknown or not kinds:
            raise ConfigError(f"unknown NetBox kinds {list(kinds)!r}; expected devices and/or virtual-machines",
                              field="inventory.kinds")
        self.kinds = tuple(kinds)
        self.filters = dict(filters if filters is not None else {"tag": "{app}"})
        self.group_from = _check_source(group_from, GROUP_SOURCES, "group_from")
        self.zone_from = _check_source(zone_from, ZONE_SOURCES, "zone_from")
        self.in_service_statuses = {s.lower() for s in in_service_statuses}
        if not 1 <= page_size <= 1000:
            raise ConfigError("page_size must be 1-1000 (NetBox's default MAX_PAGE_SIZE is 1000)",
                              field="inventory.page_size")
        self.token_env, self.user, self.port = token_env, user, port
        self.page_size, self.timeout, self.verify_tls = page_size, timeout, verify_tls
        self.name = f"netbox:{safe_url(self.base)}"

    # ------------------------------------------------------------------ Inventory port
    async def hosts(self, app: str, env: str) -> list[Host]:
        params = self.query(app, env)
        token = token_from_env(self.token_env, self.name)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = self._auth_header(token)
        hint = (f"check the token in ${self.token_env} and its read permission"
                if self.token_env else "this NetBox needs a token: set token_env")
        hosts: list[Host] = []
        found_at: list[str] = []
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout, verify=self.verify_tls) as client:
            for kind in self.kinds:
                for record in await self._fetch_all(client, kind, params, hint):
                    host = self._host(record, kind)
                    if host is not None:
                        hosts.append(host)
                        found_at.append(self._where(record, kind))
        if not hosts:
            shown = "&".join(f"{k}={v}" for k, v in params)
            raise InventoryError(
                f"{self.name}: no {' or '.join(_KIND_NAME[k] + 's' for k in self.kinds)} match {shown} "
                f"for app {app} in env {env}; check the inventory filters"
            )
        return check_unique(hosts, found_at, advice=NO_PARTIAL)

    def query(self, app: str, env: str) -> list[tuple[str, str]]:
        """The filter query parameters for app/env (a list value repeats the parameter: AND for tags)."""
        result: list[tuple[str, str]] = []
        for key, value in self.filters.items():
            values = [value] if isinstance(value, str) else list(value)
            result += [(key, render(str(template), {"app": app, "env": env})) for template in values]
        return result

    @staticmethod
    def _auth_header(token: str) -> str:
        if token.startswith(("Token ", "Bearer ")):
            return token
        return f"Bearer {token}" if token.startswith("nbt_") else f"Token {token}"

    # ------------------------------------------------------------------ paging
    def _rebase(self, next_url: str) -> str:
        """Keep following pages on the configured scheme/host/port (a proxy may make NetBox write its
        own idea of them into ``next``) so the token never goes to another origin."""
        nxt = httpx.URL(next_url)
        return str(self.base.copy_with(path=nxt.path, query=nxt.query or None))

    async def _fetch_all(self, client: httpx.AsyncClient, kind: str,
                         params: list[tuple[str, str]], hint: str) -> list[dict[str, Any]]:
        first = self.base.join(ENDPOINTS[kind]).copy_merge_params([*params, ("limit", str(self.page_size))])
        url: str | None = str(first)
        results: list[dict[str, Any]] = []
        seen_urls: set[str] = set()
        count: int | None = None
        while url is not None:
            if url in seen_urls or len(seen_urls) > 100_000:
                raise InventoryError(f"{self.name}: pagination loops at {safe_url(url)}; {NO_PARTIAL}")
            seen_urls.add(url)
            _, page = await call(InventoryError, self.name, "GET", url, client=client, timeout=self.timeout,
                                 hint=NO_PARTIAL, auth_hint=f"{hint}; {NO_PARTIAL}", show_query=True)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise InventoryError(
                    f"{self.name}: GET {safe_url(url)} is not a NetBox list (no 'results'); is {self.base} "
                    f"the NetBox root URL? {NO_PARTIAL}"
                )
            if count is None:
                count = page.get("count") if isinstance(page.get("count"), int) else None
            bad = [r for r in page["results"] if not isinstance(r, dict)]
            if bad:
                raise InventoryError(f"{self.name}: GET {safe_url(url)}: a result is not an object: {bad[0]!r:.100}")
            results.extend(page["results"])
            nxt = page.get("next")
            url = self._rebase(nxt) if isinstance(nxt, str) and nxt else None
        ids = [r.get("id") for r in results]
        if (count is not None and len(results) != count) or len(set(ids)) != len(ids):
            raise InventoryError(
                f"{self.name}: read {len(results)} {_KIND_NAME[kind]}s ({len(set(ids))} distinct) but NetBox "
                f"reported {count}: the list changed while paging; retry. {NO_PARTIAL}"
            )
        return results

    # ------------------------------------------------------------------ mapping
    def _where(self, record: dict[str, Any], kind: str) -> str:
        return f"{self.name}: {_KIND_NAME[kind]} {record.get('name')!r} (id {record.get('id')})"

    def _host(self, record: dict[str, Any], kind: str) -> Host | None:
        """The host of a device or VM (checked by build_host), or None: out of service without an address."""
        status = _slug(record.get("status"), "value").lower()
        in_service = status in self.in_service_statuses
        address = self._address(record)
        if address is None:
            if not in_service:
                log.warning("%s (status %s) has no primary IP: left out", self._where(record, kind), status)
                return None
            raise InventoryError(
                f"{self._where(record, kind)} is {status or 'in service'} but has no primary IPv4/IPv6 address; "
                f"set its primary IP in NetBox, mark it offline, or exclude it with a filter. {NO_PARTIAL}"
            )
        tag_slugs = [_slug(t) for t in record.get("tags") or []]
        site, rack = _slug(record.get("site")), _slug(record.get("rack"), "name")
        role = _slug(record.get("role") or record.get("device_role"))
        cluster = _slug(record.get("cluster"), "name")
        fields = {"site": site, "rack": rack, "role": role, "cluster": cluster}
        zone = self._pick(self.zone_from, record, fields)
        tags = {k: v for k, v in fields.items() if v}
        tags.update(status=status, netbox_kind=_KIND_NAME[kind].replace(" ", "-"), netbox_id=str(record.get("id", "")),
                    netbox_tags=",".join(tag_slugs))
        if zone:
            tags["zone"] = zone
        item = {"name": record.get("name"), "address": address, "port": self.port, "user": self.user,
                "group": self._group(record, fields, tag_slugs, kind) or DEFAULT_GROUP, "tags": tags,
                "in_service": in_service}
        return build_host(item, self._where(record, kind), spelled={"group": self.group_from},
                          advice=f"fix it in NetBox or leave it out with a filter; {NO_PARTIAL}")

    @staticmethod
    def _address(record: dict[str, Any]) -> str | None:
        for key in ("primary_ip4", "primary_ip6"):
            ref = record.get(key)
            if isinstance(ref, Mapping) and ref.get("address"):
                text = str(ref["address"]).split("/", 1)[0]
                try:
                    return str(ipaddress.ip_address(text))
                except ValueError:
                    continue
        return None

    def _pick(self, source: str, record: dict[str, Any], fields: dict[str, str]) -> str:
        if source == "none":
            return ""
        if source.startswith("cf:"):
            value = (record.get("custom_fields") or {}).get(source[3:])
            return "" if value is None else str(value)
        return fields.get(source, "")

    def _group(self, record: dict[str, Any], fields: dict[str, str], tag_slugs: list[str], kind: str) -> str:
        if not self.group_from.startswith("tag-prefix:"):
            return self._pick(self.group_from, record, fields)
        prefix = self.group_from.split(":", 1)[1]
        found = sorted({t[len(prefix):] for t in tag_slugs if t.startswith(prefix) and len(t) > len(prefix)})
        if len(found) > 1:
            raise InventoryError(f"{self._where(record, kind)} has several group tags "
                                 f"{[prefix + g for g in found]}; give it one")
        return found[0] if found else ""
