"""Fake Eureka server REST API (github.com/Netflix/eureka/wiki/Eureka-REST-operations).

``PUT /eureka/apps/<APP>/<id>/status?value=OUT_OF_SERVICE`` sets the override (status and
overriddenStatus); ``DELETE /eureka/apps/<APP>/<id>/status[?value=UP]`` removes it (overriddenStatus
UNKNOWN, status = value or UNKNOWN). ``GET /eureka/apps/<APP>/<id>`` answers
``{"instance": {...}}`` and ``GET /eureka/apps/<APP>`` ``{"application": {"name", "instance": [...]}}``,
only when the Accept header asks for JSON (XML otherwise, like the real server). Unknown app or instance
-> 404. App names are matched upper-case. Optional basic auth (401).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from .base import FakeServer, Request, Response


@dataclass
class FakeEureka(FakeServer):
    username: str | None = None
    password: str | None = None
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def register(self, app: str, instance_id: str, ip: str, port: int) -> None:
        self.instances[(app.upper(), instance_id)] = {
            "instanceId": instance_id, "hostName": ip, "app": app.upper(), "ipAddr": ip, "status": "UP",
            "overriddenStatus": "UNKNOWN", "port": {"$": port, "@enabled": "true"}, "vipAddress": app.lower()}

    def handle(self, request: Request) -> Response:
        if self.username:
            expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return Response(401, "Unauthorized", "text/plain")
        parts = request.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["eureka", "apps"] and request.method == "GET":
            found = [dict(i) for (app, _), i in self.instances.items() if app == parts[2].upper()]
            if not found:
                return Response(404, "", "text/plain")
            if "json" not in request.headers.get("accept", ""):
                return Response(200, f"<application><name>{parts[2].upper()}</name></application>", "application/xml")
            return Response(200, {"application": {"name": parts[2].upper(), "instance": found}})
        if len(parts) < 4 or parts[:2] != ["eureka", "apps"]:
            return Response(404, "", "text/plain")
        key = (parts[2].upper(), parts[3])
        instance = self.instances.get(key)
        if instance is None:
            return Response(404, "", "text/plain")
        if len(parts) == 4 and request.method == "GET":
            if "json" not in request.headers.get("accept", ""):
                return Response(200, f"<instance><status>{instance['status']}</status></instance>", "application/xml")
            return Response(200, {"instance": instance})
        if len(parts) == 5 and parts[4] == "status":
            if request.method == "PUT":
                value = request.query.get("value")
                if value not in ("UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN"):
                    return Response(500, "", "text/plain")
                instance["status"] = instance["overriddenStatus"] = value
                return Response(200, "", "application/xml")
            if request.method == "DELETE":
                instance["overriddenStatus"] = "UNKNOWN"
                instance["status"] = request.query.get("value", "UNKNOWN")
                return Response(200, "", "application/xml")
        return Response(405, "", "text/plain")
