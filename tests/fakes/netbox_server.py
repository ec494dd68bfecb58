"""A small FAKE NetBox REST API (not NetBox itself) for the inventory tests.

It follows NetBox's documented REST API for what graylift reads: ``GET /api/dcim/devices/`` and
``/api/virtualization/virtual-machines/`` with ``tag`` (several = all of them), ``role``, ``site``,
``status``, ``name`` filters (several values of the others = any of them; an unknown slug -> HTTP 400 like
NetBox's "Select a valid choice"), ``limit``/``offset`` pagination (default 50, max 1000) with absolute
``next``/``previous`` links and ``count``, and token authentication (``Authorization: Token <v1>`` or
``Bearer nbt_<key>.<secret>``; none or a wrong one -> HTTP 403 with a ``detail``). Objects are shaped like
NetBox 4 (status {value,label}, nested site/role/rack/tags, primary_ip4 {address: "10.0.0.5/24"}).
Unknown query parameters are ignored. Runs in a thread on 127.0.0.1 (tests/fakes/base.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .base import FakeServer, Request, Response

STATUSES = ("active", "offline", "planned", "staged", "failed", "inventory", "decommissioning")
PATHS = {"/api/dcim/devices/": "devices", "/api/virtualization/virtual-machines/": "virtual-machines"}


def _ref(kind: str, ident: int, name: str, slug: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"id": ident, "url": f"http://netbox/api/{kind}/{ident}/", "display": name, "name": name}
    if slug is not None:
        ref["slug"] = slug
    return ref


def make_record(ident: int, name: str | None, *, ip: str | None = None, ip6: str | None = None,
                site: str = "dc1", role: str = "app-server", rack: str | None = None,
                tags: tuple[str, ...] = (), status: str = "active", cluster: str | None = None,
                custom_fields: dict[str, Any] | None = None, kind: str = "devices") -> dict[str, Any]:
    """One device or VM as NetBox 4 serializes it (only the fields that matter here, plus a few)."""
    record: dict[str, Any] = {
        "id": ident,
        "url": f"http://netbox/api/{'dcim/devices' if kind == 'devices' else 'virtualization/virtual-machines'}"
               f"/{ident}/",
        "display": name or f"Unnamed device ({ident})",
        "name": name,
        "status": {"value": status, "label": status.capitalize()},
        "role": _ref("dcim/device-roles", 10 + len(role), role.replace("-", " ").title(), role),
        "site": _ref("dcim/sites", 100 + len(site), site.upper(), site),
        "tenant": None,
        "platform": None,
        "primary_ip": None,
        "primary_ip4": None,
        "primary_ip6": None,
        "tags": [{"id": 1000 + i, "url": f"http://netbox/api/extras/tags/{1000 + i}/", "display": t,
                  "name": t, "slug": t, "color": "9e9e9e"} for i, t in enumerate(tags)],
        "custom_fields": dict(custom_fields or {}),
        "created": "2024-01-01T00:00:00Z",
        "last_updated": "2024-01-01T00:00:00Z",
    }
    if kind == "devices":
        record["rack"] = _ref("dcim/racks", 500 + ident, rack) if rack else None
        record["device_type"] = _ref("dcim/device-types", 7, "PowerEdge R650", "poweredge-r650")
    else:
        record["cluster"] = _ref("virtualization/clusters", 600, cluster) if cluster else None
    if ip:
        record["primary_ip4"] = {"id": 2000 + ident, "url": f"http://netbox/api/ipam/ip-addresses/{2000 + ident}/",
                                 "display": ip, "family": {"value": 4, "label": "IPv4"}, "address": ip}
        record["primary_ip"] = record["primary_ip4"]
    if ip6:
        record["primary_ip6"] = {"id": 3000 + ident, "url": f"http://netbox/api/ipam/ip-addresses/{3000 + ident}/",
                                 "display": ip6, "family": {"value": 6, "label": "IPv6"}, "address": ip6}
        record["primary_ip"] = record["primary_ip"] or record["primary_ip6"]
    return record


@dataclass
class FakeNetbox(FakeServer):
    """Holds the data and knobs; ``start()`` serves it on 127.0.0.1 and returns the base URL."""

    token: str | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    virtual_machines: list[dict[str, Any]] = field(default_factory=list)
    max_page_size: int = 1000
    next_base: str | None = None  # write this scheme://host into next links (like a misconfigured proxy)
    delay: float = 0.0  # seconds to wait before answering
    fail_status: dict[int, int] = field(default_factory=dict)  # request number (1-based) -> HTTP status
    on_request: Callable[[FakeNetbox, int], None] | None = None
    known_tags: set[str] = field(default_factory=set)  # tag slugs that exist even if no object has them

    def handle(self, request: Request) -> Response:
        status, body = self.answer(request, len(self.requests))
        return Response(status, body)

    # ------------------------------------------------------------------ the API
    def answer(self, request: Request, number: int) -> tuple[int, Any]:
        if self.on_request is not None:
            self.on_request(self, number)
        if self.delay:
            time.sleep(self.delay)
        if number in self.fail_status:
            return self.fail_status[number], {"detail": "Server Error (fake)"}
        authorization = request.headers.get("authorization")
        if self.token is not None:
            if not authorization:
                return 403, {"detail": "Authentication credentials were not provided."}
            if authorization not in (f"Token {self.token}", f"Bearer {self.token}"):
                return 403, {"detail": "Invalid token"}
        host = request.headers.get("host", "netbox")
        if request.path in ("/api", "/api/"):
            return 200, {"dcim": f"http://{host}/api/dcim/", "virtualization": f"http://{host}/api/virtualization/"}
        kind = PATHS.get(request.path)
        if kind is None:
            return 404, {"detail": "Not found."}
        records = self.devices if kind == "devices" else self.virtual_machines
        errors, matched = self._filter(records, request.params)
        if errors:
            return 400, errors
        return 200, self._page(matched, request.params, f"{self.next_base or 'http://' + host}{request.path}")

    def _filter(self, records: list[dict[str, Any]], query: dict[str, list[str]]
                ) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
        every = self.devices + self.virtual_machines
        choices = {
            "tag": {t["slug"] for r in every for t in r["tags"]} | self.known_tags,
            "role": {r["role"]["slug"] for r in every if r.get("role")},
            "site": {r["site"]["slug"] for r in every if r.get("site")},
            "status": set(STATUSES),
        }
        errors: dict[str, list[str]] = {}
        for key, allowed in choices.items():
            for value in query.get(key, []):
                if value not in allowed:
                    errors.setdefault(key, []).append(
                        f"Select a valid choice. {value} is not one of the available choices.")
        if errors:
            return errors, []
        result = []
        for r in records:
            slugs = {t["slug"] for t in r["tags"]}
            if not all(t in slugs for t in query.get("tag", [])):
                continue
            if "role" in query and (r.get("role") or {}).get("slug") not in query["role"]:
                continue
            if "site" in query and (r.get("site") or {}).get("slug") not in query["site"]:
                continue
            if "status" in query and r["status"]["value"] not in query["status"]:
                continue
            if "name" in query and r["name"] not in query["name"]:
                continue
            result.append(r)
        return {}, sorted(result, key=lambda r: r["id"])

    def _page(self, matched: list[dict[str, Any]], query: dict[str, list[str]], base: str) -> dict[str, Any]:
        limit = int(query.get("limit", ["50"])[0] or 50)
        limit = self.max_page_size if limit == 0 else min(limit, self.max_page_size)
        offset = int(query.get("offset", ["0"])[0] or 0)
        rest = [(k, v) for k, vs in query.items() if k not in ("limit", "offset") for v in vs]

        def link(start: int) -> str:
            return f"{base}?{urlencode([*rest, ('limit', limit), ('offset', start)])}"

        return {
            "count": len(matched),
            "next": link(offset + limit) if offset + limit < len(matched) else None,
            "previous": link(max(offset - limit, 0)) if offset > 0 else None,
            "results": matched[offset: offset + limit],
        }
