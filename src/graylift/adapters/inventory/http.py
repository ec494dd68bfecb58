"""An inventory read over HTTP: a JSON host list at a URL.

``HttpJsonInventory`` GETs a URL template (``{app}``, ``{env}``) that answers either a JSON list of hosts or
``{"hosts": [...]}``, each host with the fields of the built-in YAML import: name, address, port?, user?,
group?, tags?, in_service?. Every error is an InventoryError naming the URL (and, for bad data, the host
index and field); no release runs on a partial host list. A bearer token, if any, is read from an
environment variable and never appears in a message.

Each host is checked by :func:`graylift.core.hosts.build_host`, as in every other inventory.
"""

from __future__ import annotations

import os

import httpx

from graylift.adapters._http import call, safe_url
from graylift.core.hosts import build_host, check_unique
from graylift.core.model import Host
from graylift.core.template import render
from graylift.errors import InventoryError

NO_PARTIAL = "no release runs on a partial host list"


def token_from_env(name: str | None, source: str) -> str | None:
    """Read a secret from the environment variable ``name`` (None: no token)."""
    if not name:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise InventoryError(
            f"{source}: the API token environment variable {name} is not set or empty; "
            f"export {name}=<token> before running graylift"
        )
    return value


# ---------------------------------------------------------------------- HTTP JSON inventory
class HttpJsonInventory:
    """GET ``url`` (a template with ``{app}`` and ``{env}``) -> a list of hosts or ``{"hosts": [...]}``."""

    def __init__(
        self,
        *,
        url: str,
        token_env: str | None = None,
        timeout: float = 10.0,
        verify_tls: bool = True,
    ) -> None:
        self.url_template = url
        self.token_env = token_env
        self.timeout = timeout
        self.verify_tls = verify_tls

    def url_for(self, app: str, env: str) -> str:
        return render(self.url_template, {"app": app, "env": env})

    async def hosts(self, app: str, env: str) -> list[Host]:
        url = self.url_for(app, env)
        source = f"http inventory {safe_url(url)}"
        token = token_from_env(self.token_env, source)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        hint = f"check the token in ${self.token_env}" if self.token_env else "set token_env to send a token"
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout, verify=self.verify_tls) as client:
            _, data = await call(InventoryError, source, "GET", url, client=client, timeout=self.timeout,
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
