"""nginx Plus REST API: drain the host's upstream server, wait for active connections to end, then down.

Written against the documented API (``/api/<version>/http/upstreams/<upstream>/servers`` and
``.../servers/<id>`` PATCH; peers' ``state`` and ``active`` in ``/api/<version>/http/upstreams/<upstream>``).
The upstream needs a ``zone`` and the ``api write=on`` location. Tested against a fake that follows the docs.
The reads are shared by the hosts that wait at once (:class:`graylift.adapters._limits.SharedReads`): a batch
polling its servers sends one GET per poll, not one per host.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from graylift.adapters._http import call, new_client, safe_url, url_secrets
from graylift.adapters._limits import SharedReads, tick
from graylift.adapters._preflight import by_host, every_host, listing
from graylift.adapters.registry import Backend, Build
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import EnvName, HttpUrl, Port, PositiveInt, PositiveSeconds, Seconds, Section, Text

OUT_STATES = frozenset({"draining", "down"})
STATUS_HINTS = {405: "is the API location 'api write=on;'?", 404: "does the upstream exist and have a 'zone'?"}


class NginxPlusTraffic(Section):
    """nginx Plus REST API: drain, wait for active connections to end, down."""

    type: Literal["nginx_plus"] = "nginx_plus"
    url: HttpUrl
    upstream: Text
    port: Port
    api_version: PositiveInt = 8
    drain_timeout: Seconds = 30.0
    up_timeout: Seconds = 30.0
    poll_interval: PositiveSeconds = 0.2
    timeout: PositiveSeconds = 5.0
    headers: dict[Text, str] = Field(default_factory=dict)
    headers_env: dict[Text, EnvName] = Field(default_factory=dict)  # header -> variable holding its value
    name: Text | None = None


class NginxPlusSwitch:
    """One upstream of one nginx Plus; the host's server is ``<address>:<port>`` (or ``<name>:<port>``)."""

    propagation_seconds = 0.0  # a load balancer's change is seen at once

    def __init__(self, cfg: NginxPlusTraffic, *, headers: dict[str, str] | None = None) -> None:
        """``headers``: every header to send, secrets included (``cfg.headers`` when not given)."""
        self.cfg = cfg
        headers = dict(cfg.headers) if headers is None else headers
        self.base = f"{cfg.url.rstrip('/')}/{cfg.api_version}/http/upstreams/{cfg.upstream}"
        self.where = safe_url(cfg.url)  # for messages: no userinfo
        self._secrets = (*headers.values(), *url_secrets(cfg.url))
        self.name = cfg.name or f"nginx-plus:{cfg.upstream}"
        self._client = new_client(timeout=cfg.timeout, headers=headers)
        self._reads = SharedReads()  # this switch's GETs, shared by its hosts waiting at once

    @classmethod
    def from_config(cls, cfg: NginxPlusTraffic, build: Build) -> NginxPlusSwitch:
        """The headers, with the value of each ``headers_env`` header read from its variable."""
        secret = {header: build.secret(variable, f"headers_env.{header}") or ""
                  for header, variable in cfg.headers_env.items()}
        return cls(cfg, headers={**cfg.headers, **secret})

    def _addresses(self, host: Host) -> set[str]:
        return {f"{host.address}:{self.cfg.port}", f"{host.name}:{self.cfg.port}"}

    async def take_out(self, host: Host) -> None:
        """drain -> wait until the peer's active connections are 0 (or drain_timeout) -> down. Idempotent."""
        server = await self._server(host)
        if server.get("down"):
            return
        await self._patch(host, server["id"], {"drain": True})
        deadline = time.monotonic() + self.cfg.drain_timeout
        while (await self.in_flight(host) or 0) > 0 and time.monotonic() < deadline:
            await tick(self.cfg.poll_interval)
        await self._patch(host, server["id"], {"down": True})

    async def put_back(self, host: Host) -> None:
        """down=false, drain=false -> wait (up to up_timeout) until the peer is ``up`` (checks pass)."""
        server = await self._server(host)
        await self._patch(host, server["id"], {"down": False, "drain": False})
        deadline = time.monotonic() + self.cfg.up_timeout
        while not await self.is_in(host):
            if time.monotonic() >= deadline:
                states = sorted({str(p.get("state")) for p in await self._peers(host)})
                raise TrafficError(f"{self.name}: {host.name} is enabled but not 'up' after "
                                   f"{self.cfg.up_timeout:g}s (state {', '.join(states)}); is the app "
                                   "passing nginx's health check?")
            await tick(self.cfg.poll_interval)

    async def is_out(self, host: Host) -> bool:
        server = await self._server(host)
        peers = await self._peers(host)
        return bool(server.get("down") or server.get("drain")) and all(p.get("state") in OUT_STATES
                                                                         for p in peers)

    async def is_in(self, host: Host) -> bool:
        server = await self._server(host)
        peers = await self._peers(host)
        return not (server.get("down") or server.get("drain")) and bool(peers) and all(
            p.get("state") == "up" for p in peers)

    async def in_flight(self, host: Host) -> int | None:
        return sum(int(p.get("active") or 0) for p in await self._peers(host))

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """ONE ``GET .../servers`` for all hosts. Writes nothing."""
        try:
            servers = await self._request("GET", f"{self.base}/servers")
        except TrafficError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        by_address = {s.get("server"): s for s in servers or [] if isinstance(s, dict)}

        def state(host: Host) -> str | bool:
            server = next((by_address[a] for a in sorted(self._addresses(host)) if a in by_address), None)
            return self._unknown(host) if server is None else bool(server.get("down") or server.get("drain"))

        problems, out = by_host(self.name, hosts, state)
        return Preflight(tuple(problems), (
            f"{self.name}: upstream {self.cfg.upstream} has {len(by_address)} server(s) at {self.where}",
            *listing(self.name, "already down or draining", out)))

    async def close(self) -> None:
        await self._client.aclose()

    def _unknown(self, host: Host) -> str:
        return (f"upstream {self.cfg.upstream} has no server {host.address}:{self.cfg.port} for host {host.name}; "
                "add it to the upstream (graylift only drains and re-enables servers)")

    # API -------------------------------------------------------------------------------------------

    async def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        _, answer = await call(TrafficError, self.name, method, url, json=body, client=self._client,
                               timeout=self.cfg.timeout, secrets=self._secrets, status_hints=STATUS_HINTS,
                               hint=f"is nginx Plus running with its 'api' location at {self.where}?")
        return answer

    async def _get(self, url: str) -> Any:
        """A GET shared with this switch's other callers waiting at once (answered by one sent after the ask)."""
        return await self._reads.read(url, lambda: self._request("GET", url))

    async def _server(self, host: Host) -> dict[str, Any]:
        servers = await self._get(f"{self.base}/servers")
        wanted = self._addresses(host)
        for server in servers or []:
            if server.get("server") in wanted:
                return dict(server)
        raise TrafficError(f"{self.name}: {self._unknown(host)}")

    async def _peers(self, host: Host) -> list[dict[str, Any]]:
        group = await self._get(self.base)
        wanted = self._addresses(host)
        peers = (group or {}).get("peers", [])
        return [p for p in peers if p.get("server") in wanted or p.get("name") in wanted]

    async def _patch(self, host: Host, server_id: int, body: dict[str, Any]) -> None:
        await self._request("PATCH", f"{self.base}/servers/{server_id}", body)


BACKEND = Backend(NginxPlusTraffic, NginxPlusSwitch.from_config)
