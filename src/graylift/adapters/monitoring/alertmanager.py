"""Alertmanager silences (API v2): one silence per host and reason, ending at a fixed time.

A silence graylift made is recognised by createdBy "graylift", matchers exactly {label=value} and
comment == reason. mute() returns an existing active silence's id unchanged (its end time is not moved), so a
host has at most one silence per reason, and unmute() given that id expires it in one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from graylift.adapters._http import call, new_client, safe_url, url_secrets
from graylift.adapters._limits import LoopSemaphores
from graylift.adapters._preflight import every_host
from graylift.adapters.registry import Backend, Build
from graylift.core.model import Host
from graylift.core.template import host_values, render
from graylift.errors import SilencerError
from graylift.ports import Preflight
from graylift.schema import HostTemplate, HttpUrl, PositiveSeconds, Section, Text

if TYPE_CHECKING:
    import httpx

CREATED_BY = "graylift"


def _iso(moment: datetime) -> str:
    """Timezone-aware UTC RFC 3339 (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


REQUEST_CONCURRENCY = 4
BUSY_ATTEMPTS = 6
_limit = LoopSemaphores(REQUEST_CONCURRENCY)


class AlertmanagerMonitoring(Section):
    type: Literal["alertmanager"] = "alertmanager"
    url: HttpUrl
    label: Text = "instance"
    value: HostTemplate = "{host}"  # the label's value for a host
    silence_minutes: PositiveSeconds = 30.0


class AlertmanagerSilencer:
    def __init__(self, cfg: AlertmanagerMonitoring, *, timeout: float = 10.0) -> None:
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        self.timeout = timeout
        self.name = f"alertmanager:{safe_url(self.url)}"  # no userinfo: the name lands in messages
        self._secrets = url_secrets(self.url)
        self._client: httpx.AsyncClient | None = None  # made at the first call in a loop, kept until close()
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(cls, cfg: AlertmanagerMonitoring, build: Build) -> AlertmanagerSilencer:
        return cls(cfg)

    def value(self, host: Host) -> str:
        return render(self.cfg.value, host_values(host))

    async def mute(self, host: Host, *, until: datetime, reason: str) -> str:
        found = await self._active(host, reason)
        if found:
            return str(found[0]["id"])
        now = datetime.now(UTC)
        end = until if until.tzinfo else until.replace(tzinfo=UTC)
        if end <= now:
            raise SilencerError(f"{self.name}: silence end {_iso(until)} for {host.name} "
                                "is not in the future")
        body = {
            "matchers": [{"name": self.cfg.label, "value": self.value(host), "isRegex": False, "isEqual": True}],
            "startsAt": _iso(now),
            "endsAt": _iso(end),
            "createdBy": CREATED_BY,
            "comment": reason,
        }
        answer = await self._request("POST", "/api/v2/silences", json=body)
        try:
            return str(answer["silenceID"])
        except (KeyError, TypeError) as exc:
            raise SilencerError(f"{self.name}: POST /api/v2/silences answered without a silenceID: "
                                f"{answer!r:.200}") from exc

    async def unmute(self, host: Host, *, reason: str, silence_id: str | None = None) -> None:
        """Expire the host's silences for ``reason``: the one its mute answered (``silence_id``), in one call;
        without an id, or when Alertmanager refuses to expire that one (an id it does not know), every active
        one found."""
        if silence_id is not None:
            try:
                await self._expire(silence_id)
                return  # a mute reuses an active silence of the host and reason: this was the only one
            except SilencerError:
                pass  # not a silence it knows (any more): look for what is still active
        for silence in await self._active(host, reason):
            try:
                await self._expire(str(silence["id"]))
            except SilencerError:
                # expired in between (it lapses by itself, or another run expired it): fine if gone now
                if any(s["id"] == silence["id"] for s in await self._active(host, reason)):
                    raise

    async def _expire(self, silence_id: str) -> None:
        await self._request("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}")

    async def is_muted(self, host: Host, *, reason: str) -> bool:
        return bool(await self._active(host, reason))

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """ONE ``GET /api/v2/status``: Alertmanager answers (any label value can be silenced). Writes nothing."""
        try:
            status = await self._request("GET", "/api/v2/status")
        except SilencerError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        if not isinstance(status, dict):
            return Preflight(problems=(f"{self.name}: every host: GET /api/v2/status answered {status!r:.100}; is "
                                       "that URL an Alertmanager (API v2)?",))
        version = (status.get("versionInfo") or {}).get("version", "?")
        cluster = (status.get("cluster") or {}).get("status", "?")
        return Preflight(notes=(f"{self.name}: Alertmanager {version} (cluster {cluster}) will silence "
                                f"{self.cfg.label}=<{self.cfg.value}> for {len(hosts)} hosts",))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        """One client for every call of this silencer: its connections are kept alive between calls (a mute
        is a read then a write, an unmute the same, for every host). A client belongs to the event loop it
        was made in: called from another loop, the silencer makes another."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client, self._client_loop = new_client(timeout=self.timeout), loop
        return self._client

    async def _active(self, host: Host, reason: str) -> list[dict[str, Any]]:
        """Active (or pending) silences graylift made for this host and reason."""
        wanted = {(self.cfg.label, self.value(host), False, True)}
        value = self.value(host).replace("\\", "\\\\").replace('"', '\\"')
        # the server filters by matcher, so the answer stays small however many silences exist
        silences = await self._request("GET", "/api/v2/silences", params={"filter": f'{self.cfg.label}="{value}"'})
        if not isinstance(silences, list):
            raise SilencerError(f"{self.name}: GET /api/v2/silences did not return a list")
        found = []
        for silence in silences:
            if silence.get("status", {}).get("state") not in ("active", "pending"):
                continue
            if silence.get("createdBy") != CREATED_BY or silence.get("comment") != reason:
                continue
            matchers = {(m.get("name"), m.get("value"), bool(m.get("isRegex")), bool(m.get("isEqual", True)))
                        for m in silence.get("matchers", [])}
            if matchers == wanted:
                found.append(silence)
        return found

    async def _request(self, method: str, path: str, json: object = None,
                       params: dict[str, str] | None = None) -> Any:
        """One API call; at most REQUEST_CONCURRENCY at once per URL, and a 503 ("limit of concurrent
        requests reached", Alertmanager's --web.get-concurrency) is retried with a short backoff."""
        async with _limit(self.url):
            for attempt in range(1, BUSY_ATTEMPTS + 1):
                status, answer = await call(SilencerError, self.name, method, self.url + path, json=json,
                                            params=params, timeout=self.timeout, secrets=self._secrets,
                                            client=self._http(),
                                            ok_statuses=(503,) if attempt < BUSY_ATTEMPTS else (),
                                            hint="is Alertmanager running at that URL?")
                if status != 503:
                    return answer
                await asyncio.sleep(0.1 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover


BACKEND = Backend(AlertmanagerMonitoring, AlertmanagerSilencer.from_config)
