"""Zabbix maintenance (JSON-RPC at ``<url>/api_jsonrpc.php``) as a Silencer.

mute: ``host.get`` (filter by technical host name, ``host_template``), then ``maintenance.create`` named
``graylift <reason> <host>`` with ``active_since`` = now, ``active_till`` = ``until`` and one one-time
period (``timeperiod_type`` 0, at least 300 s as Zabbix requires); the maintenance lapses by itself.
The name makes mute idempotent: an active maintenance with that name is returned as is, an expired
one is deleted and recreated. unmute: ``maintenance.delete`` of the id the mute answered (else of the one
found by name). is_muted: the named maintenance exists
and now is inside [active_since, active_till).

Auth: an API token, or ``user.login`` (``username``/``password``); the session/token is sent as
``Authorization: Bearer`` (Zabbix >= 6.4). ``legacy_auth=True`` sends it as the ``auth`` field and
hosts as ``hostids`` (Zabbix < 6.4).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import model_validator

from graylift.adapters._http import call, safe_url, scrub, url_secrets
from graylift.adapters._preflight import every_host
from graylift.adapters.registry import Backend, Build
from graylift.core.model import Host
from graylift.core.template import host_values, render
from graylift.errors import SilencerError
from graylift.ports import Preflight
from graylift.schema import EnvName, Flag, HostTemplate, HttpUrl, PositiveSeconds, Text, UserPassword, exactly_one

MIN_PERIOD = 300
NAME_LIMIT = 128
AUTH_WORDS = ("auth", "session", "login", "password", "token")


class ZabbixMonitoring(UserPassword):
    """Zabbix maintenance (JSON-RPC): an API token (token_env), or username + password_env."""

    type: Literal["zabbix"] = "zabbix"
    url: HttpUrl
    token_env: EnvName | None = None
    username: Text | None = None
    password_env: EnvName | None = None
    host: HostTemplate = "{host}"  # the Zabbix technical host name
    legacy_auth: Flag = False
    timeout: PositiveSeconds = 10.0
    silence_minutes: PositiveSeconds = 30.0

    @model_validator(mode="after")
    def _one_credential(self) -> ZabbixMonitoring:
        exactly_one("give token_env (the environment variable holding an API token) or username + password_env, "
                    "exactly one of them", self.token_env, self.username)
        return self


class ZabbixSilencer:
    def __init__(self, cfg: ZabbixMonitoring, *, token: str | None = None, password: str | None = None) -> None:
        """``token`` (an API token) or ``password`` (of ``cfg.username``): the secrets, read by from_config."""
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        if not self.url.endswith("/api_jsonrpc.php"):
            self.url += "/api_jsonrpc.php"
        self._token = token
        self._password = password
        self.name = f"zabbix:{safe_url(self.url)}"  # no userinfo: the name lands in messages
        self._ids = 0
        self._logged_in = False  # a session from user.login (None with an API token): user.logout at close

    @classmethod
    def from_config(cls, cfg: ZabbixMonitoring, build: Build) -> ZabbixSilencer:
        return cls(cfg, token=build.secret(cfg.token_env, "token_env"),
                   password=build.secret(cfg.password_env, "password_env"))

    def maintenance_name(self, host: Host, reason: str) -> str:
        return f"graylift {reason} {host.name}"[:NAME_LIMIT]

    async def mute(self, host: Host, *, until: datetime, reason: str) -> str:
        end = until if until.tzinfo else until.replace(tzinfo=UTC)
        now = math.floor(time.time())
        till = math.floor(end.timestamp())
        if till <= now:
            raise SilencerError(f"{self.name}: maintenance end {end.isoformat()} for {host.name} is not in the future")
        name = self.maintenance_name(host, reason)
        found = await self._find(name)
        if found is not None:
            if int(found.get("active_till", 0)) > now:
                return str(found["maintenanceid"])
            await self._rpc("maintenance.delete", [found["maintenanceid"]])
        hostid = await self._hostid(host)
        params: dict[str, Any] = {
            "name": name, "active_since": now, "active_till": till, "maintenance_type": 0,
            "description": f"graylift: {reason}",
            "timeperiods": [{"timeperiod_type": 0, "start_date": now, "period": max(MIN_PERIOD, till - now)}],
        }
        if self.cfg.legacy_auth:
            params["hostids"] = [hostid]
        else:
            params["hosts"] = [{"hostid": hostid}]
        result = await self._rpc("maintenance.create", params)
        try:
            return str(result["maintenanceids"][0])
        except (KeyError, IndexError, TypeError) as exc:
            raise SilencerError(f"{self.name}: maintenance.create answered without maintenanceids: "
                                f"{result!r:.200}") from exc

    async def unmute(self, host: Host, *, reason: str, silence_id: str | None = None) -> None:
        """Delete the host's maintenance for ``reason``: the one its mute answered (``silence_id``) in one call;
        without an id, or when Zabbix refuses that one (an id it no longer knows), the one found by name."""
        if silence_id is not None:
            try:
                await self._rpc("maintenance.delete", [silence_id])
                return  # a mute reuses the named maintenance while active: this was the host's only one
            except SilencerError:
                pass  # deleted meanwhile (by hand, or replaced): look it up by name as without an id
        found = await self._find(self.maintenance_name(host, reason))
        if found is not None:
            await self._rpc("maintenance.delete", [found["maintenanceid"]])

    async def is_muted(self, host: Host, *, reason: str) -> bool:
        found = await self._find(self.maintenance_name(host, reason))
        now = time.time()
        return found is not None and int(found.get("active_since", 0)) <= now < int(found.get("active_till", 0))

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """``apiinfo.version``, the login, and ONE ``host.get`` for every host's technical name. Writes nothing."""
        technical = {host.name: self._technical(host) for host in hosts}
        try:
            version = await self._rpc("apiinfo.version", {}, auth=False)
            found = await self._rpc("host.get", {"output": ["hostid", "host"],
                                                 "filter": {"host": sorted(set(technical.values()))}})
        except SilencerError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        known = {item.get("host") for item in found or [] if isinstance(item, dict)}
        problems = tuple(f"{self.name}: {host}: Zabbix has no host named {name!r}; add it to Zabbix or fix "
                         "host_template (it must give the technical host name)"
                         for host, name in technical.items() if name not in known)
        return Preflight(problems, (f"{self.name}: Zabbix {version}, {len(hosts) - len(problems)} of {len(hosts)} "
                                    "hosts known",))

    async def close(self) -> None:
        """Ends the session user.login opened (an API token is left alone)."""
        if self._logged_in:
            with contextlib.suppress(SilencerError):
                await self._rpc("user.logout", [])
            self._token, self._logged_in = None, False

    def _technical(self, host: Host) -> str:
        return render(self.cfg.host, host_values(host))

    async def _find(self, name: str) -> dict[str, Any] | None:
        result = await self._rpc("maintenance.get", {"output": "extend", "filter": {"name": [name]},
                                                     "selectHosts": ["hostid"]})
        if not isinstance(result, list):
            raise SilencerError(f"{self.name}: maintenance.get did not return a list")
        return next((m for m in result if m.get("name") == name), None)

    async def _hostid(self, host: Host) -> str:
        technical = self._technical(host)
        result = await self._rpc("host.get", {"output": ["hostid", "host"], "filter": {"host": [technical]}})
        if not result:
            raise SilencerError(f"{self.name}: Zabbix has no host named {technical!r}; check host_template "
                                "(it must give the Zabbix technical host name)")
        return str(result[0]["hostid"])

    async def _rpc(self, method: str, params: Any, *, auth: bool = True) -> Any:
        self._ids += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": self._ids}
        headers = {"Content-Type": "application/json-rpc"}
        if auth:
            token = await self._session()
            if self.cfg.legacy_auth:
                body["auth"] = token
            else:
                headers["Authorization"] = f"Bearer {token}"
        _, answer = await call(SilencerError, self.name, "POST", self.url, json=body, headers=headers,
                               timeout=self.cfg.timeout, secrets=(self._password, self._token),
                               hint="is the Zabbix frontend reachable at that URL?")
        if not isinstance(answer, dict):
            raise SilencerError(f"{self.name}: {method} answered {answer!r:.200}, not a JSON-RPC object")
        if "error" in answer:
            error = answer["error"] or {}
            detail = f"{error.get('message', '')} {error.get('data', '')}".strip()
            what = ("check the API token / username and password and the user's permissions"
                    if method == "user.login" or any(word in detail.lower() for word in AUTH_WORDS)
                    else "check the Zabbix user's role allows maintenance and host access")
            raise SilencerError(scrub(f"{self.name}: {method} failed: {detail[:300]}; {what}",
                                      (self._password, self._token, *url_secrets(self.url))))
        return answer.get("result")

    async def _session(self) -> str:
        if self._token is None:
            result = await self._rpc("user.login", {"username": self.cfg.username, "password": self._password or ""},
                                     auth=False)
            if not isinstance(result, str) or not result:
                raise SilencerError(f"{self.name}: user.login as {self.cfg.username!r} returned no session")
            self._token, self._logged_in = result, True
        return self._token


BACKEND = Backend(ZabbixMonitoring, ZabbixSilencer.from_config)
