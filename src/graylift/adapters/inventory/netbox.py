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
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from graylift.adapters._http import call, safe_url
from graylift.adapters.inventory.http import FILTER_PLACEHOLDERS, NO_PARTIAL
from graylift.adapters.registry import Backend, Build
from graylift.core import template as templates
from graylift.core.hosts import DEFAULT_GROUP, build_host, check_unique
from graylift.core.model import Host
from graylift.errors import InventoryError
from graylift.schema import (
    EnvName,
    Flag,
    HttpUrl,
    PlainName,
    Port,
    PositiveSeconds,
    Section,
    Text,
    check_text,
    fail,
    is_int,
    non_empty,
)

log = logging.getLogger(__name__)

ENDPOINTS = {"devices": "api/dcim/devices/", "virtual-machines": "api/virtualization/virtual-machines/"}
_KIND_NAME = {"devices": "device", "virtual-machines": "virtual machine"}
GROUP_SOURCES = ("role", "site", "rack", "cluster", "none")
ZONE_SOURCES = ("site", "rack", "cluster", "none")


def _check_source(value: str, allowed: tuple[str, ...], tag_prefix: bool) -> str:
    if value in allowed or (value.startswith("cf:") and len(value) > 3):
        return value
    if tag_prefix and value.startswith("tag-prefix:") and len(value) > len("tag-prefix:"):
        return value
    extra = ", tag-prefix:PREFIX" if tag_prefix else ""
    raise fail("source", f"must be one of {', '.join(allowed)}, cf:FIELD{extra}", value)


def _check_page_size(value: Any) -> Any:
    if not is_int(value) or not 1 <= value <= 1000:
        raise fail("page_size", "must be a whole number from 1 to 1000", value)
    return value


def _check_filter(value: Any) -> Any:
    """A NetBox filter value: a text template, or a list of them (the parameter repeated)."""
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, str) or not item.strip():
            raise fail("filter", "must be a non-empty text or a list of texts", value)
        problem = templates.problem(item, FILTER_PLACEHOLDERS)
        if problem:
            raise PydanticCustomError("template", "{problem}", {"problem": problem})
    return value


NetboxFilter = Annotated[str | list[str], BeforeValidator(_check_filter)]
NetboxKind = Literal["devices", "virtual-machines"]


def _default_kinds() -> list[NetboxKind]:
    return ["devices"]


def _default_filters() -> dict[str, str | list[str]]:
    return {"tag": "{app}"}


class NetboxInventoryConfig(Section):
    """NetBox devices and/or virtual machines (docs/inventory.md)."""

    type: Literal["netbox"] = "netbox"
    url: HttpUrl
    token_env: EnvName | None = "NETBOX_TOKEN"
    kinds: Annotated[list[NetboxKind], BeforeValidator(non_empty)] = Field(default_factory=_default_kinds)
    filters: dict[Text, NetboxFilter] = Field(default_factory=_default_filters)
    group_from: Annotated[str, BeforeValidator(check_text), AfterValidator(
        lambda v: _check_source(v, GROUP_SOURCES, True))] = "role"
    zone_from: Annotated[str, BeforeValidator(check_text), AfterValidator(
        lambda v: _check_source(v, ZONE_SOURCES, False))] = "site"
    in_service_statuses: Annotated[list[Text], BeforeValidator(non_empty)] = Field(default_factory=lambda: ["active"])
    user: PlainName = "root"
    port: Port = 22
    page_size: Annotated[int, BeforeValidator(_check_page_size)] = 200
    timeout: PositiveSeconds = 10.0
    verify_tls: Flag = True


def _slug(ref: Any, key: str = "slug") -> str:
    """The slug (or name) of a nested NetBox object, '' for null."""
    if isinstance(ref, Mapping):
        return str(ref.get(key) or ref.get("name") or "")
    return "" if ref is None else str(ref)


class NetboxInventory:
    """The Inventory port over a NetBox instance (v3.6+ / v4 REST API)."""

    def __init__(self, cfg: NetboxInventoryConfig, *, token: str | None = None) -> None:
        """``token``: the API token (from ``cfg.token_env``, read by from_config)."""
        self.cfg = cfg
        self.base = httpx.URL(cfg.url.rstrip("/") + "/")
        self.in_service_statuses = {s.lower() for s in cfg.in_service_statuses}
        self._token = token
        self.name = f"netbox:{safe_url(self.base)}"

    @classmethod
    def from_config(cls, cfg: NetboxInventoryConfig, build: Build) -> NetboxInventory:
        return cls(cfg, token=build.secret(cfg.token_env, "token_env"))

    # ------------------------------------------------------------------ Inventory port
    async def hosts(self, app: str, env: str) -> list[Host]:
        params = self.query(app, env)
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = self._auth_header(self._token.strip())
        hint = (f"check the token in ${self.cfg.token_env} and its read permission"
                if self.cfg.token_env else "this NetBox needs a token: set token_env")
        hosts: list[Host] = []
        found_at: list[str] = []
        async with httpx.AsyncClient(headers=headers, timeout=self.cfg.timeout, verify=self.cfg.verify_tls) as client:
            for kind in self.cfg.kinds:
                for record in await self._fetch_all(client, kind, params, hint):
                    host = self._host(record, kind)
                    if host is not None:
                        hosts.append(host)
                        found_at.append(self._where(record, kind))
        if not hosts:
            shown = "&".join(f"{k}={v}" for k, v in params)
            raise InventoryError(
                f"{self.name}: no {' or '.join(_KIND_NAME[k] + 's' for k in self.cfg.kinds)} match {shown} "
                f"for app {app} in env {env}; check the inventory filters"
            )
        return check_unique(hosts, found_at, advice=NO_PARTIAL)

    def query(self, app: str, env: str) -> list[tuple[str, str]]:
        """The filter query parameters for app/env (a list value repeats the parameter: AND for tags)."""
        result: list[tuple[str, str]] = []
        for key, value in self.cfg.filters.items():
            values = [value] if isinstance(value, str) else list(value)
            result += [(key, templates.render(str(template), {"app": app, "env": env})) for template in values]
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
        first = self.base.join(ENDPOINTS[kind]).copy_merge_params([*params, ("limit", str(self.cfg.page_size))])
        url: str | None = str(first)
        results: list[dict[str, Any]] = []
        seen_urls: set[str] = set()
        count: int | None = None
        while url is not None:
            if url in seen_urls or len(seen_urls) > 100_000:
                raise InventoryError(f"{self.name}: pagination loops at {safe_url(url)}; {NO_PARTIAL}")
            seen_urls.add(url)
            _, page = await call(InventoryError, self.name, "GET", url, client=client, timeout=self.cfg.timeout,
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
        zone = self._pick(self.cfg.zone_from, record, fields)
        tags = {k: v for k, v in fields.items() if v}
        tags.update(status=status, netbox_kind=_KIND_NAME[kind].replace(" ", "-"), netbox_id=str(record.get("id", "")),
                    netbox_tags=",".join(tag_slugs))
        if zone:
            tags["zone"] = zone
        item = {"name": record.get("name"), "address": address, "port": self.cfg.port, "user": self.cfg.user,
                "group": self._group(record, fields, tag_slugs, kind) or DEFAULT_GROUP, "tags": tags,
                "in_service": in_service}
        return build_host(item, self._where(record, kind), spelled={"group": self.cfg.group_from},
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
        if not self.cfg.group_from.startswith("tag-prefix:"):
            return self._pick(self.cfg.group_from, record, fields)
        prefix = self.cfg.group_from.split(":", 1)[1]
        found = sorted({t[len(prefix):] for t in tag_slugs if t.startswith(prefix) and len(t) > len(prefix)})
        if len(found) > 1:
            raise InventoryError(f"{self._where(record, kind)} has several group tags "
                                 f"{[prefix + g for g in found]}; give it one")
        return found[0] if found else ""


BACKEND = Backend(NetboxInventoryConfig, NetboxInventory.from_config)
