"""NginxPlusSwitch against a FAKE nginx Plus API (http.server in a thread) that follows the documented API:
``GET /api/<v>/http/upstreams/<u>/servers``, ``PATCH .../servers/<id>``, ``GET /api/<v>/http/upstreams/<u>``
(peers with ``state`` and ``active``), error bodies ``{"error": {"status", "text", "code"}}``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from graylift.adapters.nginx_plus import NginxPlusSwitch
from graylift.core.model import Host
from graylift.errors import TrafficError

HOSTS = [Host(name="app1", address="10.213.0.1"), Host(name="app2", address="10.213.0.2")]


class FakePlus:
    """Upstream 'web' with two servers. ``active`` counts drop by one per GET while draining."""

    def __init__(self) -> None:
        self.servers: list[dict[str, Any]] = [
            {"id": i, "server": f"{h.address}:8080", "weight": 1, "max_conns": 0, "max_fails": 1,
                         "fail_timeout": "10s", "slow_start": "0s", "route": "", "backup": False,
                         "down": False, "drain": False} for i, h in enumerate(HOSTS)]
        self.active = {0: 0, 1: 0}
        self.patches: list[tuple[int, dict[str, Any]]] = []
        self.write = True

    def peer(self, s: dict[str, Any]) -> dict[str, Any]:
        state = "down" if s["down"] else "draining" if s["drain"] else "up"
        if s["drain"] and self.active[s["id"]] > 0:
            self.active[s["id"]] -= 1
        return {"id": s["id"], "server": s["server"], "name": s["server"], "backup": False, "weight": 1,
                "state": state, "active": self.active[s["id"]], "requests": 10, "fails": 0}

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/8/http/upstreams/([^/]+)(/servers(?:/(\d+))?)?", path)
        if not m or m.group(1) != "web":
            return 404, {"error": {"status": 404, "text": "upstream not found", "code": "UpstreamNotFound"}}
        if method == "GET" and m.group(2) is None:
            return 200, {"peers": [self.peer(s) for s in self.servers], "keepalive": 0, "zombies": 0,
                         "zone": "web"}
        if method == "GET" and m.group(3) is None:
            return 200, self.servers
        if method == "PATCH" and m.group(3) is not None:
            if not self.write:
                return 405, {"error": {"status": 405, "text": "method disabled", "code": "MethodDisabled"}}
            server = self.servers[int(m.group(3))]
            unknown = set(body or {}) - {"weight", "max_conns", "max_fails", "fail_timeout", "slow_start",
                                         "route", "backup", "down", "drain", "server"}
            if unknown:
                return 400, {"error": {"status": 400, "text": f"unknown parameter {unknown}",
                                       "code": "UpstreamConfFormatError"}}
            self.patches.append((server["id"], dict(body or {})))
            server.update(body or {})
            return 200, server
        return 405, {"error": {"status": 405, "text": "method not supported", "code": "MethodNotSupported"}}


@pytest.fixture
def fake() -> Iterator[tuple[FakePlus, str]]:
    state = FakePlus()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = state.handle(method, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_PATCH(self) -> None:
            self._answer("PATCH")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_drain_waits_for_active_then_down_and_back(fake: tuple[FakePlus, str]) -> None:
    state, url = fake
    switch = NginxPlusSwitch(url=url, upstream="web", port=8080, poll_interval=0.01, up_timeout=2)
    try:
        assert await switch.is_in(HOSTS[0]) and not await switch.is_out(HOSTS[0])
        state.active[0] = 3
        await switch.take_out(HOSTS[0])
        assert state.patches == [(0, {"drain": True}), (0, {"down": True})]
        assert state.active[0] == 0
        assert await switch.is_out(HOSTS[0]) and not await switch.is_in(HOSTS[0])
        assert await switch.is_in(HOSTS[1])
        await switch.take_out(HOSTS[0])  # idempotent: already down, no PATCH
        assert len(state.patches) == 2
        await switch.put_back(HOSTS[0])
        assert state.patches[-1] == (0, {"down": False, "drain": False})
        assert await switch.is_in(HOSTS[0]) and await switch.in_flight(HOSTS[0]) == 0
    finally:
        await switch.close()


async def test_errors_name_the_problem(fake: tuple[FakePlus, str]) -> None:
    state, url = fake
    switch = NginxPlusSwitch(url=url, upstream="web", port=8080)
    missing = NginxPlusSwitch(url=url, upstream="nope", port=8080)
    dead = NginxPlusSwitch(url="http://127.0.0.1:9/api", upstream="web", port=8080, timeout=1)
    try:
        with pytest.raises(TrafficError, match=r"no server 10.213.0.9:8080 for host ghost"):
            await switch.take_out(Host(name="ghost", address="10.213.0.9"))
        with pytest.raises(TrafficError, match=r"404 UpstreamNotFound.*zone"):
            await missing.is_out(HOSTS[0])
        state.write = False
        with pytest.raises(TrafficError, match=r"405 MethodDisabled.*write=on"):
            await switch.take_out(HOSTS[0])
        with pytest.raises(TrafficError, match=r"cannot reach the nginx Plus API"):
            await dead.is_in(HOSTS[0])
    finally:
        for s in (switch, missing, dead):
            await s.close()
