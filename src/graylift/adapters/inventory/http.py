"""An inventory read over HTTP: a JSON host list at a URL.

``HttpJsonInventory`` GETs a URL template (``{app}``, ``{env}``) that answers either a JSON list of hosts or
``{"hosts": [...]}``, each host with the fields of the built-in YAML import: name, address, port?, user?,
group?, tags?, in_service?. Every error is an InventoryError naming the URL (and, for bad data, the host
index and field); no release runs on a partial host list. A bearer token, if any, is read from an
environment variable and never appears in a message.

Each host is checked by :func:`graylift.core.hosts.build_host`, as in every other inventory.
"""

from __future__ import annotations

from typing import Annotated, Literal

import httpx

from graylift.adapters._http import call, safe_url
from graylift.adapters.registry import Backend, Build
from graylift.core.hosts import build_host, check_unique
from graylift.core.model import Host
from graylift.core.template import render
from graylift.errors import InventoryError
from graylift.schema import EnvName, Flag, HttpUrl, PositiveSeconds, Section, placeholders

NO_PARTIAL = "no release runs on a partial host list"


FILTER_PLACEHOLDERS = frozenset({"app", "env"})  # of an inventory's URL or filters


class HttpInventoryConfig(Section):
    """A JSON host list at a URL (``{app}``, ``{env}``)."""

    type: Literal["http"] = "http"
    url: Annotated[HttpUrl, placeholders(FILTER_PLACEHOLDERS)]
    token_env: EnvName | None = None
    timeout: PositiveSeconds = 10.0
    verify_tls: Flag = True


class HttpJsonInventory:
    """GET ``url`` (a template with ``{app}`` and ``{env}``) -> a list of hosts or ``{"hosts": [...]}``."""

    def __init__(self, cfg: HttpInventoryConfig, *, token: str | None = None) -> None:
        """``token``: the bearer token (from ``cfg.token_env``, read by from_config)."""
        self.cfg = cfg
        self._token = token

    @classmethod
    def from_config(cls, cfg: HttpInventoryConfig, build: Build) -> HttpJsonInventory:
        return cls(cfg, token=build.secret(cfg.token_env, "token_env"))

    def url_for(self, app: str, env: str) -> str:
        return render(self.cfg.url, {"app": app, "env": env})

    async def hosts(self, app: str, env: str) -> list[Host]:
        url = self.url_for(app, env)
        source = f"http inventory {safe_url(url)}"
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token.strip()}"
        hint = f"check the token in ${self.cfg.token_env}" if self.cfg.token_env else "set token_env to send a token"
        async with httpx.AsyncClient(headers=headers, timeout=self.cfg.timeout, verify=self.cfg.verify_tls) as client:
            _, data = await call(InventoryError, source, "GET", url, client=client, timeout=self.cfg.timeout,
                                 hint=NO_PARTIAL, auth_hint=f"{hint}; {NO_PARTIAL}")
        items = data["hosts"] if isinstance(data, dict) and "hosts" in data else data
        if not isinstance(items, list):
            raise InventoryError(
                f"{source}: expected a JSON list of hosts or {{\"hosts\": [...]}}, got {type(data).__name__}; "
                f"{NO_PARTIAL}"
            )
        if not items:
            raise InventoryError(f"{source}: no hosts for app {app} in env {env}")
        found_at = [f"{source}: hosts[{index}]" for index in range(len(items))]
        return check_unique([build_host(item, at) for item, at in zip(items, found_at, strict=True)], found_at,
                            advice=NO_PARTIAL)


BACKEND = Backend(HttpInventoryConfig, HttpJsonInventory.from_config)
