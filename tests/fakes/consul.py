"""Fake Consul agent API: service maintenance and agent checks.

Follows developer.hashicorp.com/consul/api-docs/agent/service and /agent/check:
``PUT /v1/agent/service/maintenance/:service_id`` needs ``enable`` (true|false; 400 "Missing value
for enable" otherwise), optional ``reason``; unknown id -> 404 "Unknown service ID". Enabling adds the
critical check ``_service_maintenance:<id>`` (Notes = reason), disabling removes it.
``GET /v1/agent/checks`` -> {CheckID: {...}}; ``GET /v1/agent/services`` -> {ID: {ID, Service, Tags, Meta,
Port, Address, Weights, EnableTagOverride, Datacenter}}. With ``acl_token`` set, requests without the right
``X-Consul-Token`` header get 403 "Permission denied".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import FakeServer, Request, Response

DEFAULT_REASON = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."


@dataclass
class FakeConsulAgent(FakeServer):
    acl_token: str | None = None
    services: dict[str, str] = field(default_factory=dict)  # service id -> service name
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def register(self, service_id: str, name: str, check_status: str = "passing") -> None:
        self.services[service_id] = name
        self.checks[f"service:{service_id}"] = {"Node": "fake", "CheckID": f"service:{service_id}",
                                                "Name": f"Service '{name}' check", "Status": check_status,
                                                "Notes": "", "Output": "", "ServiceID": service_id,
                                                "ServiceName": name}

    def handle(self, request: Request) -> Response:
        if self.acl_token and request.headers.get("x-consul-token") != self.acl_token:
            return Response(403, "Permission denied", "text/plain")
        prefix = "/v1/agent/service/maintenance/"
        if request.path.startswith(prefix) and request.method == "PUT":
            sid = request.path[len(prefix):]
            enable = request.query.get("enable")
            if enable not in ("true", "false"):
                return Response(400, "Missing value for enable", "text/plain")
            if sid not in self.services:
                return Response(404, f'Unknown service ID "{sid}"', "text/plain")
            check_id = f"_service_maintenance:{sid}"
            if enable == "true":
                self.checks[check_id] = {"Node": "fake", "CheckID": check_id, "Name": "Service Maintenance Mode",
                                         "Status": "critical", "Notes": request.query.get("reason") or DEFAULT_REASON,
                                         "Output": "", "ServiceID": sid, "ServiceName": self.services[sid]}
            else:
                self.checks.pop(check_id, None)
            return Response(200, "", "text/plain")
        if request.path == "/v1/agent/checks" and request.method == "GET":
            return Response(200, self.checks)
        if request.path == "/v1/agent/services" and request.method == "GET":
            return Response(200, {sid: {"ID": sid, "Service": name, "Tags": [], "Meta": {}, "Port": 0, "Address": "",
                                        "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False,
                                        "Datacenter": "dc1"} for sid, name in self.services.items()})
        return Response(404, "Not found", "text/plain")
