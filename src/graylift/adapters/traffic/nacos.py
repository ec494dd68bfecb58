"""Nacos naming (open API v1): take an instance out by setting ``enabled=false`` on it.

take_out / put_back: ``PUT /nacos/v1/ns/instance`` with serviceName, ip, port, groupName, clusterName,
namespaceId, ephemeral and ``enabled=false|true``. Nacos rebuilds the instance from the request, so
the current ``weight`` and ``metadata`` (read with ``GET /nacos/v1/ns/instance``) are sent back
unchanged. Verify: ``GET /nacos/v1/ns/instance/list`` (healthyOnly=false). Nacos 2.x leaves disabled
instances out of that list (1.x lists them with ``enabled: false``), so an instance missing from the
list counts as out only when the detail call still finds it; unknown instances are a TrafficError.

With username/password the adapter logs in (``POST /nacos/v1/auth/login``) and sends ``accessToken``.
Nacos answers 403 ("token expired!", "token invalid!") once the token's ``tokenTtl`` is over: the
adapter then logs in once more and repeats the request. Secrets are never put in messages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from graylift.adapters._preflight import by_host, each, every_host, listing
from graylift.adapters.registry import Backend, Build
from graylift.adapters.traffic._registry_base import HttpRegistrySwitch, HttpRegistryTraffic, token_login
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import Flag, Port, Text


class NacosTraffic(HttpRegistryTraffic):
    """Nacos naming (open API v1): enabled=false on the instance."""

    type: Literal["nacos"] = "nacos"
    service: Text
    port: Port
    namespace: str = ""
    group: Text = "DEFAULT_GROUP"
    cluster: Text = "DEFAULT"
    ephemeral: Flag = True


class NacosSwitch(HttpRegistrySwitch):
    def __init__(self, cfg: NacosTraffic, *, password: str | None = None) -> None:
        self.cfg = cfg
        super().__init__(cfg, f"nacos:{cfg.group}@@{cfg.service}", hint="is Nacos running at {where}?")
        self.api.login = token_login(self.api, cfg, password, "/nacos/v1/auth/login", key="accessToken",
                                     user_field="username", form=True)

    @classmethod
    def from_config(cls, cfg: NacosTraffic, build: Build) -> NacosSwitch:
        return cls(cfg, password=build.secret(cfg.password_env, "password_env"))

    async def take_out(self, host: Host) -> None:
        await self._set_enabled(host, False)
        if not await self.is_out(host):
            raise TrafficError(f"{self.name}: {host.address}:{self.cfg.port} still listed as enabled after take-out")

    async def put_back(self, host: Host) -> None:
        await self._set_enabled(host, True)

    async def is_out(self, host: Host) -> bool:
        listed = await self._listed(host)
        if listed is not None:
            return listed.get("enabled") is False
        await self._detail(host)  # raises when the instance is not registered at all
        return True

    async def is_in(self, host: Host) -> bool:
        listed = await self._listed(host)
        return listed is not None and listed.get("enabled", True) is not False

    async def in_flight(self, host: Host) -> int | None:
        return None

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """ONE instance list for all hosts; the detail call only for hosts the list leaves out (2.x omits
        disabled instances). Writes nothing."""
        try:
            listed = {(item.get("ip"), int(item.get("port", -1))): item for item in await self._list()}
            missing = [h for h in hosts if (h.address, self.cfg.port) not in listed]
            registered = await each(missing, self._registered)
        except TrafficError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        unknown = {h.name for h, found in zip(missing, registered, strict=True) if not found}

        def state(host: Host) -> str | bool:
            item = listed.get((host.address, self.cfg.port))
            return (self._not_registered(host) if host.name in unknown
                    else item is None or item.get("enabled") is False)

        problems, out = by_host(self.name, hosts, state)
        return Preflight(tuple(problems), (
            f"{self.name}: {len(hosts) - len(problems) - len(out)} of {len(hosts)} hosts registered and enabled in "
            f"Nacos at {self.where}", *listing(self.name, "already disabled", out)))

    async def close(self) -> None:
        return None  # one HTTP connection per call; Nacos tokens just expire

    # ------------------------------------------------------------------

    def _ids(self, host: Host) -> dict[str, str]:
        params = {"serviceName": self.cfg.service, "groupName": self.cfg.group, "ip": host.address,
                  "port": str(self.cfg.port), "clusterName": self.cfg.cluster}
        if self.cfg.namespace:
            params["namespaceId"] = self.cfg.namespace
        return params

    async def _set_enabled(self, host: Host, enabled: bool) -> None:
        current = await self._detail(host)
        params = {**self._ids(host), "ephemeral": str(self.cfg.ephemeral).lower(), "enabled": str(enabled).lower(),
                  "weight": str(current.get("weight", 1.0)), "metadata": json.dumps(current.get("metadata") or {})}
        await self._request("PUT", "/nacos/v1/ns/instance", params, expect_json=False)

    def _not_registered(self, host: Host) -> str:
        return (f"Nacos at {self.where} has no instance {host.address}:{self.cfg.port} (cluster {self.cfg.cluster}, "
                f"namespace {self.cfg.namespace or 'public'}); is {host.name} registered, and do "
                "service/group/cluster/namespace/port match?")

    async def _registered(self, host: Host) -> bool:
        status, answer = await self._request("GET", "/nacos/v1/ns/instance", self._ids(host), ok_statuses=(404,))
        return status != 404 and isinstance(answer, dict)

    async def _detail(self, host: Host) -> dict[str, Any]:
        status, answer = await self._request("GET", "/nacos/v1/ns/instance", self._ids(host), ok_statuses=(404,))
        if status == 404 or not isinstance(answer, dict):
            raise TrafficError(f"{self.name}: {self._not_registered(host)}")
        return answer

    async def _list(self) -> list[dict[str, Any]]:
        params = {"serviceName": self.cfg.service, "groupName": self.cfg.group, "clusters": self.cfg.cluster,
                  "healthyOnly": "false"}
        if self.cfg.namespace:
            params["namespaceId"] = self.cfg.namespace
        _, answer = await self._request("GET", "/nacos/v1/ns/instance/list", params)
        hosts = answer.get("hosts") if isinstance(answer, dict) else None
        if not isinstance(hosts, list):
            raise TrafficError(f"{self.name}: GET /nacos/v1/ns/instance/list answered without a `hosts` list")
        return [dict(item) for item in hosts if isinstance(item, dict)]

    async def _listed(self, host: Host) -> dict[str, Any] | None:
        return next((item for item in await self._list()
                     if item.get("ip") == host.address and int(item.get("port", -1)) == self.cfg.port), None)

    async def _request(self, method: str, path: str, params: dict[str, str], *, expect_json: bool = True,
                       ok_statuses: tuple[int, ...] = ()) -> tuple[int, Any]:
        """One call; with a login, a 403 (expired or invalid token) drops the token and repeats it once."""
        status, answer = await self.api.call_logged_in(
            method, path, params=params, expect_json=expect_json, ok_statuses=ok_statuses, refusal=403,
            with_token=lambda token: {"params": {"accessToken": token}})
        if status == 403 and self.api.login is not None:
            raise self.api.fail(f"{self.name}: {method} {path} was refused with HTTP 403 even after a fresh login "
                                f"({str(answer).strip()[:200]}); check the permissions of the Nacos user "
                                f"{self.cfg.username!r}")
        if status in ok_statuses and status != 200:
            return status, None
        if isinstance(answer, str) and expect_json:
            try:
                return status, json.loads(answer)
            except ValueError:
                pass
        return status, answer


BACKEND = Backend(NacosTraffic, NacosSwitch.from_config)
