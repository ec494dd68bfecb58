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

from graylift.adapters._http import call, safe_url, scrub
from graylift.adapters._limits import LoopSemaphores
from graylift.adapters._preflight import each, every_host, names
from graylift.adapters.registry import Backend, Build
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import EnvName, Flag, HttpUrl, Port, PositiveSeconds, Seconds, Text, UserPassword

_login_gate = LoopSemaphores(1)


class NacosTraffic(UserPassword):
    """Nacos naming (open API v1): enabled=false on the instance."""

    type: Literal["nacos"] = "nacos"
    url: HttpUrl
    service: Text
    port: Port
    namespace: str = ""
    group: Text = "DEFAULT_GROUP"
    cluster: Text = "DEFAULT"
    ephemeral: Flag = True
    username: Text | None = None
    password_env: EnvName | None = None
    propagation_seconds: Seconds = 0.0
    timeout: PositiveSeconds = 10.0


class NacosSwitch:
    def __init__(self, cfg: NacosTraffic, *, password: str | None = None) -> None:
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        self.where = safe_url(self.url)  # for messages: no userinfo
        self.propagation_seconds = cfg.propagation_seconds
        self._password = password
        self._token: str | None = None
        self.name = f"nacos:{cfg.group}@@{cfg.service}"

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
        problems, out = [], []
        for host in hosts:
            item = listed.get((host.address, self.cfg.port))
            if host.name in unknown:
                problems.append(f"{self.name}: {host.name}: {self._not_registered(host)}")
            elif item is None or item.get("enabled") is False:
                out.append(host.name)
        notes = [f"{self.name}: {len(hosts) - len(problems) - len(out)} of {len(hosts)} hosts registered and "
                 f"enabled in Nacos at {self.where}"]
        if out:
            notes.append(f"{self.name}: already disabled: {names(out)}")
        return Preflight(tuple(problems), tuple(notes))

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
        for attempt in (1, 2):
            query, token = dict(params), None
            if self.cfg.username:
                token = await self._login()
                query["accessToken"] = token
            status, answer = await call(TrafficError, self.name, method, self.url + path, params=query,
                                        timeout=self.cfg.timeout, expect_json=expect_json, secrets=self._secrets(),
                                        ok_statuses=(*ok_statuses, 403) if token else ok_statuses,
                                        hint=f"is Nacos running at {self.where}?")
            if status == 403 and token:
                if self._token == token:
                    self._token = None
                if attempt == 1:
                    continue
                raise TrafficError(scrub(f"{self.name}: {method} {path} was refused with HTTP 403 even after a "
                                         f"fresh login ({str(answer).strip()[:200]}); check the permissions of "
                                         f"the Nacos user {self.cfg.username!r}", self._secrets()))
            if status in ok_statuses and status != 200:
                return status, None
            if isinstance(answer, str) and expect_json:
                try:
                    return status, json.loads(answer)
                except ValueError:
                    pass
            return status, answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _secrets(self) -> tuple[str | None, ...]:
        return self._password, self._token

    async def _login(self) -> str:
        async with _login_gate(str(id(self))):  # one login at a time; the others use its token
            if self._token is None:
                _, answer = await call(TrafficError, self.name, "POST", self.url + "/nacos/v1/auth/login",
                                       data={"username": self.cfg.username or "", "password": self._password or ""},
                                       timeout=self.cfg.timeout, secrets=self._secrets(),
                                       hint=f"is Nacos running at {self.where}, and are the user {self.cfg.username!r} "
                                       "and its password right?")
                token = answer.get("accessToken") if isinstance(answer, dict) else None
                if not token:
                    raise TrafficError(f"{self.name}: Nacos login as {self.cfg.username!r} returned no accessToken; "
                                       "check the username/password")
                self._token = str(token)
            return self._token


BACKEND = Backend(NacosTraffic, NacosSwitch.from_config)
