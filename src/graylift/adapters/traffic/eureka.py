"""Eureka status override: OUT_OF_SERVICE while the host is out.

take_out: ``PUT /eureka/apps/<APP>/<instanceId>/status?value=OUT_OF_SERVICE``; put_back: ``DELETE
/eureka/apps/<APP>/<instanceId>/status?value=UP`` (removes the override; UP is the suggested status
until the next heartbeat). Verify: ``GET /eureka/apps/<APP>/<instanceId>`` with ``Accept:
application/json``: out = status or overriddenStatus is OUT_OF_SERVICE; in = status UP and no
override. ``url`` is the Eureka base including its context path (e.g. ``http://eureka:8761/eureka``);
optional HTTP basic auth. ``propagation_seconds`` is how long the take-out step waits: Eureka clients
refresh their registry every 30 s by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import httpx
from pydantic import BeforeValidator

from graylift.adapters._http import basic_auth
from graylift.adapters._preflight import by_host, every_host, listing
from graylift.adapters.registry import Backend, Build
from graylift.adapters.traffic._registry_base import HttpRegistrySwitch, HttpRegistryTraffic
from graylift.core.model import Host
from graylift.core.template import host_values, render
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import (
    Port,
    Text,
    check_text,
    placeholders,
)

OUT = "OUT_OF_SERVICE"


ID_PLACEHOLDERS = frozenset({"host", "address", "app", "port"})


class EurekaTraffic(HttpRegistryTraffic):
    """Eureka status override OUT_OF_SERVICE while the host is out."""

    type: Literal["eureka"] = "eureka"
    app: Text
    port: Port
    instance_id: Annotated[str, BeforeValidator(check_text), placeholders(ID_PLACEHOLDERS)] = "{host}:{app}:{port}"


class EurekaSwitch(HttpRegistrySwitch):
    def __init__(self, cfg: EurekaTraffic, *, password: str | None = None) -> None:
        self.cfg = cfg
        self.app = cfg.app.upper()  # as Eureka names registered apps
        super().__init__(cfg, f"eureka:{self.app}",
                         hint="is Eureka running at {where} (url includes the context path)?",
                         secrets=(password, basic_auth(cfg.username, password or "") if cfg.username else None))
        self._auth = httpx.BasicAuth(cfg.username, password or "") if cfg.username else None

    @classmethod
    def from_config(cls, cfg: EurekaTraffic, build: Build) -> EurekaSwitch:
        return cls(cfg, password=build.secret(cfg.password_env, "password_env"))

    def instance_id(self, host: Host) -> str:
        return render(self.cfg.instance_id, {**host_values(host), "app": self.cfg.app, "port": str(self.cfg.port)})

    def _path(self, host: Host) -> str:
        return f"/apps/{self.app}/{self.instance_id(host)}"

    async def take_out(self, host: Host) -> None:
        await self._request("PUT", host, "/status", {"value": OUT})
        if not await self.is_out(host):
            raise TrafficError(f"{self.name}: {self.instance_id(host)} is not OUT_OF_SERVICE after the override")

    async def put_back(self, host: Host) -> None:
        await self._request("DELETE", host, "/status", {"value": "UP"})

    async def is_out(self, host: Host) -> bool:
        instance = await self.instance(host)
        return OUT in (instance.get("status"), _override(instance))

    async def is_in(self, host: Host) -> bool:
        instance = await self.instance(host)
        return instance.get("status") == "UP" and _override(instance) in (None, "UNKNOWN", "UP")

    async def in_flight(self, host: Host) -> int | None:
        return None

    async def instance(self, host: Host) -> dict[str, Any]:
        answer = await self._request("GET", host, "", None, headers={"Accept": "application/json"})
        instance = answer.get("instance") if isinstance(answer, dict) else None
        if not isinstance(instance, dict):
            raise TrafficError(f"{self.name}: GET /apps/{self.app}/{self.instance_id(host)} answered without "
                               "an `instance` object")
        return instance

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """ONE ``GET /apps/<APP>`` (every instance of the app) for all hosts. Writes nothing."""
        try:
            status, answer = await self._call("GET", f"/apps/{self.app}", None,
                                              {"Accept": "application/json"})
        except TrafficError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        if status == 404:
            return Preflight(problems=(f"{self.name}: every host: Eureka at {self.where} has no app "
                                       f"{self.app}; is the app registered, and is app spelled as it "
                                       "registers?",))
        found = (answer or {}).get("application", {}).get("instance", []) if isinstance(answer, dict) else []
        instances = {i.get("instanceId"): i for i in ([found] if isinstance(found, dict) else found)
                     if isinstance(i, dict)}

        def state(host: Host) -> str | bool:
            instance = instances.get(self.instance_id(host))
            return self._unknown(host) if instance is None else OUT in (instance.get("status"), _override(instance))

        problems, out = by_host(self.name, hosts, state)
        return Preflight(tuple(problems), (
            f"{self.name}: {len(instances)} instance(s) of {self.app} registered at {self.where}",
            *listing(self.name, "already OUT_OF_SERVICE", out)))

    async def close(self) -> None:
        return None  # one HTTP connection per call

    def _unknown(self, host: Host) -> str:
        return (f"Eureka at {self.where} has no instance {self.instance_id(host)!r} of app {self.app}; "
                f"is {host.name} registered, and does instance_id match?")

    async def _call(self, method: str, path: str, params: dict[str, str] | None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"params": params, "headers": headers or {}}
        if self._auth is not None:
            kwargs["auth"] = self._auth
        return await self.api.call(method, path, expect_json=method == "GET", ok_statuses=(404,), **kwargs)

    async def _request(self, method: str, host: Host, suffix: str, params: dict[str, str] | None,
                       headers: dict[str, str] | None = None) -> Any:
        status, answer = await self._call(method, self._path(host) + suffix, params, headers)
        if status == 404:
            raise TrafficError(f"{self.name}: {self._unknown(host)}")
        return answer


def _override(instance: dict[str, Any]) -> str | None:
    value = instance.get("overriddenStatus", instance.get("overriddenstatus"))
    return None if value is None else str(value)


BACKEND = Backend(EurekaTraffic, EurekaSwitch.from_config)
