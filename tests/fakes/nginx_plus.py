"""Fake nginx Plus REST API (docs.nginx.com/nginx/admin-guide/load-balancer/dynamic-configuration-api/).

``GET /api/<v>/http/upstreams/<u>/servers`` lists the configured servers (``id``, ``server``, ``down``,
``drain``, ...), ``PATCH .../servers/<id>`` changes one (unknown fields -> 400 UpstreamConfFormatError,
writes off -> 405 MethodDisabled), ``GET /api/<v>/http/upstreams/<u>`` gives the peers with ``state``
(up / draining / down) and ``active``. Unknown upstream -> 404 UpstreamNotFound. Error bodies are
``{"error": {"status", "text", "code"}}``. ``active`` counts drop by one per GET while a peer drains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .base import FakeServer, Request, Response

SERVER_FIELDS = {"weight", "max_conns", "max_fails", "fail_timeout", "slow_start", "route", "backup", "down",
                 "drain", "server"}


def _error(status: int, text: str, code: str) -> Response:
    return Response(status, {"error": {"status": status, "text": text, "code": code}})


@dataclass
class FakePlus(FakeServer):
    upstream: str = "web"
    servers: list[dict[str, Any]] = field(default_factory=list)
    active: dict[int, int] = field(default_factory=dict)  # server id -> open connections
    patches: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    write: bool = True  # the API location has 'api write=on;'

    def add(self, address: str) -> None:
        server_id = len(self.servers)
        self.servers.append({"id": server_id, "server": address, "weight": 1, "max_conns": 0, "max_fails": 1,
                             "fail_timeout": "10s", "slow_start": "0s", "route": "", "backup": False,
                             "down": False, "drain": False})
        self.active[server_id] = 0

    def peer(self, s: dict[str, Any]) -> dict[str, Any]:
        state = "down" if s["down"] else "draining" if s["drain"] else "up"
        if s["drain"] and self.active[s["id"]] > 0:
            self.active[s["id"]] -= 1
        return {"id": s["id"], "server": s["server"], "name": s["server"], "backup": False, "weight": 1,
                "state": state, "active": self.active[s["id"]], "requests": 10, "fails": 0}

    def handle(self, request: Request) -> Response:
        m = re.fullmatch(r"/api/8/http/upstreams/([^/]+)(/servers(?:/(\d+))?)?", request.path)
        if not m or m.group(1) != self.upstream:
            return _error(404, "upstream not found", "UpstreamNotFound")
        if request.method == "GET" and m.group(2) is None:
            return Response(200, {"peers": [self.peer(s) for s in self.servers], "keepalive": 0, "zombies": 0,
                                  "zone": self.upstream})
        if request.method == "GET" and m.group(3) is None:
            return Response(200, self.servers)
        if request.method == "PATCH" and m.group(3) is not None:
            if not self.write:
                return _error(405, "method disabled", "MethodDisabled")
            server = self.servers[int(m.group(3))]
            body = request.json() or {}
            unknown = set(body) - SERVER_FIELDS
            if unknown:
                return _error(400, f"unknown parameter {unknown}", "UpstreamConfFormatError")
            self.patches.append((server["id"], dict(body)))
            server.update(body)
            return Response(200, server)
        return _error(405, "method not supported", "MethodNotSupported")
