"""Consul service maintenance mode on the host's own agent.

take_out: ``PUT /v1/agent/service/maintenance/<service_id>?enable=true&reason=...`` on the agent at
``agent_url`` (a template, default ``http://{address}:8500``). Consul then registers the critical
check ``_service_maintenance:<service_id>`` and leaves the instance out of health/DNS answers.
put_back: the same call with ``enable=false`` (removes the check). Both are idempotent in Consul.
Verify through ``GET /v1/agent/checks``: out = the maintenance check is there and critical; in = no
maintenance check and every check of the service passing. The ACL token goes in ``X-Consul-Token``.
take_out waits ``propagation_seconds`` (recorded in ``last_wait_seconds``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from graylift.adapters._http import call
from graylift.core.model import Host
from graylift.errors import TrafficError


class ConsulSwitch:
    def __init__(self, *, service: str, port: int = 0, agent_url: str = "http://{address}:8500",
                 service_id: str = "{service}", token: str | None = None, reason: str = "graylift release",
                 propagation_seconds: float = 0.0, timeout: float = 10.0) -> None:
        self.service, self.port = service, port
        self.agent_url_template = agent_url
        self.service_id_template = service_id
        self._token = token
        self.reason = reason
        self.propagation_seconds = propagation_seconds
        self.timeout = timeout
        self.last_wait_seconds = 0.0
        self.name = f"consul:{service}"

    def agent_url(self, host: Host) -> str:
        return self.agent_url_template.format(address=host.address, host=host.name).rstrip("/")

    def service_id(self, host: Host) -> str:
        return self.service_id_template.format(service=self.service, address=host.address, host=host.name,
                                               port=self.port)

    async def take_out(self, host: Host) -> None:
        await self._maintenance(host, True)
        if not await self.is_out(host):
            raise TrafficError(f"{self.name}: agent {self.agent_url(host)} shows no critical maintenance check "
                               f"for {self.service_id(host)} after enabling it")
        self.last_wait_seconds = self.propagation_seconds
        if self.propagation_seconds > 0:
            await asyncio.sleep(self.propagation_seconds)

    async def put_back(self, host: Host) -> None:
        await self._maintenance(host, False)

    async def is_out(self, host: Host) -> bool:
        check = (await self._checks(host)).get(f"_service_maintenance:{self.service_id(host)}")
        return check is not None and check.get("Status") == "critical"

    async def is_in(self, host: Host) -> bool:
        sid = self.service_id(host)
        checks = await self._checks(host)
        if f"_service_maintenance:{sid}" in checks:
            return False
        return all(c.get("Status") == "passing" for c in checks.values() if c.get("ServiceID") == sid)

    async def in_flight(self, host: Host) -> int | None:
        return None

    async def _maintenance(self, host: Host, enable: bool) -> None:
        sid = self.service_id(host)
        params = {"enable": str(enable).lower()}
        if enable:
            params["reason"] = self.reason
        status, text = await call(TrafficError, self.name, "PUT",
                                  f"{self.agent_url(host)}/v1/agent/service/maintenance/{sid}", params=params,
                                  headers=self._headers(), timeout=self.timeout, expect_json=False,
                                  ok_statuses=(404,), hint=f"is the Consul agent of {host.name} running at "
                                  f"{self.agent_url(host)}?")
        if status == 404:
            raise TrafficError(f"{self.name}: the Consul agent at {self.agent_url(host)} does not know service id "
                               f"{sid!r} ({str(text).strip()[:120]}); check service_id")

    async def _checks(self, host: Host) -> dict[str, dict[str, Any]]:
        _, answer = await call(TrafficError, self.name, "GET", f"{self.agent_url(host)}/v1/agent/checks",
                               headers=self._headers(), timeout=self.timeout,
                               hint=f"is the Consul agent of {host.name} running at {self.agent_url(host)}?")
        if not isinstance(answer, dict):
            raise TrafficError(f"{self.name}: GET /v1/agent/checks did not return an object")
        return answer

    def _headers(self) -> dict[str, str]:
        return {"X-Consul-Token": self._token} if self._token else {}
