"""Consul service maintenance mode on the host's own agent.

take_out: ``PUT /v1/agent/service/maintenance/<service_id>?enable=true&reason=...`` on the agent at
``agent_url`` (a template, default ``http://{address}:8500``). Consul then registers the critical
check ``_service_maintenance:<service_id>`` and leaves the instance out of health/DNS answers.
put_back: the same call with ``enable=false`` (removes the check). Both are idempotent in Consul.
Verify through ``GET /v1/agent/checks``: out = the maintenance check is there and critical; in = no
maintenance check and every check of the service passing. The ACL token goes in ``X-Consul-Token``.
``propagation_seconds``: how long the take-out step waits for consumers to see the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from graylift.adapters._http import call, safe_url
from graylift.adapters._preflight import each
from graylift.adapters.registry import Backend, Build
from graylift.adapters.traffic._registry_base import RegistryTraffic
from graylift.core.model import Host
from graylift.core.template import HOST_PLACEHOLDERS, host_values, render
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import EnvName, HttpUrl, Port, Text, check_text, placeholders

ID_PLACEHOLDERS = frozenset({"service", "address", "host", "port"})


class ConsulTraffic(RegistryTraffic):
    """Consul service maintenance mode on the host's own agent."""

    type: Literal["consul"] = "consul"
    service: Text
    port: Port | None = None  # only for {port} in service_id
    agent_url: Annotated[HttpUrl, placeholders(HOST_PLACEHOLDERS)] = "http://{address}:8500"
    service_id: Annotated[str, BeforeValidator(check_text), placeholders(ID_PLACEHOLDERS)] = "{service}"
    token_env: EnvName | None = None
    reason: Text = "graylift release"


class ConsulSwitch:
    def __init__(self, cfg: ConsulTraffic, *, token: str | None = None) -> None:
        self.cfg = cfg
        self.propagation_seconds = cfg.propagation_seconds
        self._token = token
        self.name = f"consul:{cfg.service}"

    @classmethod
    def from_config(cls, cfg: ConsulTraffic, build: Build) -> ConsulSwitch:
        return cls(cfg, token=build.secret(cfg.token_env, "token_env"))

    def agent_url(self, host: Host) -> str:
        return render(self.cfg.agent_url, host_values(host)).rstrip("/")

    def where(self, host: Host) -> str:
        """The host's agent URL fit for a message (no userinfo)."""
        return safe_url(self.agent_url(host))

    def service_id(self, host: Host) -> str:
        return render(self.cfg.service_id, {**host_values(host), "service": self.cfg.service,
                                            "port": str(self.cfg.port or 0)})

    async def take_out(self, host: Host) -> None:
        await self._maintenance(host, True)
        if not await self.is_out(host):
            raise TrafficError(f"{self.name}: agent {self.where(host)} shows no critical maintenance check "
                               f"for {self.service_id(host)} after enabling it")

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

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """ONE ``GET /v1/agent/services`` per agent (hosts sharing an agent share the call). Writes nothing."""
        agents: dict[str, list[Host]] = {}
        for host in hosts:
            agents.setdefault(self.agent_url(host), []).append(host)

        async def services(group: list[Host]) -> dict[str, Any] | TrafficError:
            try:
                return await self._agent_get(group[0], "/v1/agent/services")
            except TrafficError as exc:
                return exc

        problems = []
        for group, known in zip(agents.values(), await each(list(agents.values()), services), strict=True):
            for host in group:
                if isinstance(known, TrafficError):
                    problems.append(str(known).splitlines()[0].replace(f"{self.name}: ", f"{self.name}: "
                                                                       f"{host.name}: ", 1))
                elif self.service_id(host) not in known:
                    problems.append(f"{self.name}: {host.name}: the Consul agent at {self.where(host)} has no "
                                    f"service id {self.service_id(host)!r}; is the service registered there, and "
                                    "does service_id match?")
        notes = (f"{self.name}: {len(hosts) - len(problems)} of {len(hosts)} hosts registered on "
                 f"{len(agents)} agent(s)",)
        return Preflight(tuple(problems), notes)

    async def close(self) -> None:
        return None  # one HTTP connection per call

    async def _maintenance(self, host: Host, enable: bool) -> None:
        sid = self.service_id(host)
        params = {"enable": str(enable).lower()}
        if enable:
            params["reason"] = self.cfg.reason
        status, text = await call(TrafficError, self.name, "PUT",
                                  f"{self.agent_url(host)}/v1/agent/service/maintenance/{sid}", params=params,
                                  headers=self._headers(), timeout=self.cfg.timeout, expect_json=False,
                                  ok_statuses=(404,), secrets=(self._token,),
                                  hint=f"is the Consul agent of {host.name} running at {self.where(host)}?")
        if status == 404:
            raise TrafficError(f"{self.name}: the Consul agent at {self.where(host)} does not know service id "
                               f"{sid!r} ({str(text).strip()[:120]}); check service_id")

    async def _checks(self, host: Host) -> dict[str, dict[str, Any]]:
        return await self._agent_get(host, "/v1/agent/checks")

    async def _agent_get(self, host: Host, path: str) -> dict[str, dict[str, Any]]:
        _, answer = await call(TrafficError, self.name, "GET", f"{self.agent_url(host)}{path}",
                               headers=self._headers(), timeout=self.cfg.timeout, secrets=(self._token,),
                               hint=f"is the Consul agent of {host.name} running at {self.where(host)}?")
        if not isinstance(answer, dict):
            raise TrafficError(f"{self.name}: GET {path} did not return an object")
        return answer

    def _headers(self) -> dict[str, str]:
        return {"X-Consul-Token": self._token} if self._token else {}


BACKEND = Backend(ConsulTraffic, ConsulSwitch.from_config)
