"""Fake Nacos 2.x naming open API (v1 HTTP): login, instance update/detail/list.

Follows https://nacos.io/docs/ open-api: ``POST /nacos/v1/auth/login`` (form username, password ->
``accessToken`` and its ``tokenTtl`` in seconds); with auth on, every other call needs ``accessToken``:
403 "token invalid!" for an unknown one, 403 "token expired!" once ``token_ttl`` seconds have passed.
``PUT /nacos/v1/ns/instance`` needs serviceName, ip, port; groupName defaults to DEFAULT_GROUP,
clusterName to DEFAULT, namespaceId to public; like the real server it rebuilds the instance from the
request, so weight (default 1.0), metadata (default {}) and enabled (default true) are reset when not
sent. ``GET /nacos/v1/ns/instance`` returns one instance (404 if unknown); ``GET
/nacos/v1/ns/instance/list`` leaves out disabled instances, as Nacos 2.x does (``list_disabled=True``
behaves like 1.x: lists them with ``enabled: false``).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .base import FakeServer, Request, Response


@dataclass
class FakeNacos(FakeServer):
    username: str | None = None
    password: str | None = None
    list_disabled: bool = False
    token_ttl: float = 18000.0
    tokens: dict[str, float] = field(default_factory=dict)  # accessToken -> when it expires (time.monotonic)
    logins: int = 0
    instances: dict[tuple[str, str, str, str, int], dict[str, Any]] = field(default_factory=dict)

    def register(self, service: str, ip: str, port: int, *, group: str = "DEFAULT_GROUP", cluster: str = "DEFAULT",
                 namespace: str = "public", weight: float = 1.0, metadata: dict[str, str] | None = None) -> None:
        self.instances[(namespace, f"{group}@@{service}", cluster, ip, port)] = {
            "instanceId": f"{ip}#{port}#{cluster}#{group}@@{service}", "ip": ip, "port": port, "weight": weight,
            "healthy": True, "enabled": True, "ephemeral": True, "clusterName": cluster,
            "serviceName": f"{group}@@{service}", "metadata": metadata or {}}

    def instance(self, service: str, ip: str, port: int, group: str = "DEFAULT_GROUP") -> dict[str, Any]:
        return next(v for k, v in self.instances.items() if k[1] == f"{group}@@{service}" and k[3:] == (ip, port))

    def handle(self, request: Request) -> Response:
        form = request.form()
        if request.path == "/nacos/v1/auth/login" and request.method == "POST":
            if (form.get("username"), form.get("password")) != (self.username, self.password):
                return Response(403, "unknown user!", "text/plain")
            token = secrets.token_hex(8)
            self.tokens[token] = time.monotonic() + self.token_ttl
            self.logins += 1
            return Response(200, {"accessToken": token, "tokenTtl": self.token_ttl, "globalAdmin": True})
        if self.username:
            expires = self.tokens.get(form.get("accessToken") or "")
            if expires is None:
                return Response(403, "token invalid!", "text/plain")
            if time.monotonic() >= expires:
                return Response(403, "token expired!", "text/plain")
        namespace = form.get("namespaceId") or "public"
        group = form.get("groupName") or "DEFAULT_GROUP"
        if "serviceName" not in form:
            return Response(400, "Param 'serviceName' is required.", "text/plain")
        service = f"{group}@@{form['serviceName']}"
        if request.path == "/nacos/v1/ns/instance/list" and request.method == "GET":
            clusters = set(filter(None, form.get("clusters", "").split(",")))
            hosts = [dict(v) for k, v in self.instances.items() if k[:2] == (namespace, service)
                     and (not clusters or k[2] in clusters) and (v["enabled"] or self.list_disabled)]
            return Response(200, {"name": service, "groupName": group, "clusters": form.get("clusters", ""),
                                  "cacheMillis": 10000, "hosts": hosts})
        if request.path != "/nacos/v1/ns/instance":
            return Response(404, "not found", "text/plain")
        for name in ("ip", "port"):
            if name not in form:
                return Response(400, f"Param '{name}' is required.", "text/plain")
        key = (namespace, service, form.get("clusterName") or "DEFAULT", form["ip"], int(form["port"]))
        if key not in self.instances:
            return Response(404, f"no ips found for cluster {key[2]} in service {service}", "text/plain")
        current = self.instances[key]
        if request.method == "GET":
            return Response(200, {"service": service, "ip": key[3], "port": key[4], "clusterName": key[2],
                                  "weight": current["weight"], "healthy": current["healthy"],
                                  "instanceId": current["instanceId"], "metadata": current["metadata"]})
        if request.method == "PUT":
            if form.get("ephemeral", "true") != str(current["ephemeral"]).lower():
                return Response(400, "ephemeral mismatch: instance is of the other type", "text/plain")
            current["weight"] = float(form.get("weight", 1.0))
            current["metadata"] = json.loads(form["metadata"]) if form.get("metadata") else {}
            current["enabled"] = form.get("enabled", "true") == "true"
            return Response(200, "ok", "text/plain")
        return Response(405, "method not allowed", "text/plain")
