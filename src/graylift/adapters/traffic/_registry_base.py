"""What the service registries share (etcd, Nacos, Eureka, Consul, Dubbo 3): the keys of their sections,
the start of the switch of those reached over HTTP with an optional login (etcd, Nacos, Eureka), and the
token login of etcd and Nacos.

pydantic lists a base's fields before the subclass's own, so a registry's "allowed keys: ..." in a config
error reads ``type``, these keys, then the backend's own.
"""

from __future__ import annotations

from collections.abc import Iterable

from graylift.adapters._http import Api, Login
from graylift.errors import TrafficError
from graylift.schema import EnvName, HttpUrl, PositiveSeconds, Seconds, Section, Text, UserPassword


class RegistryTraffic(Section):
    """``propagation_seconds``: how long the take-out step waits for consumers to see the change (they cache
    provider lists); ``timeout``: of one call to the registry."""

    type: str  # each backend's Literal tag; declared here so that it stays the first of the allowed keys
    propagation_seconds: Seconds = 0.0
    timeout: PositiveSeconds = 10.0


class HttpRegistryTraffic(RegistryTraffic, UserPassword):
    """A registry's HTTP server at ``url``, with ``username`` + ``password_env`` (both or neither)."""

    url: HttpUrl
    username: Text | None = None
    password_env: EnvName | None = None


class HttpRegistrySwitch:
    """The start of an HTTP registry's switch: its ``name``, ``propagation_seconds``, ``api`` (the server at
    the config's ``url``, with its ``timeout``) and ``where`` (that URL for messages: no userinfo). The
    subclass keeps its own ``cfg`` and sets the login its server wants."""

    def __init__(self, cfg: HttpRegistryTraffic, name: str, *, hint: str, secrets: Iterable[str | None] = ()) -> None:
        self.name = name
        self.propagation_seconds = cfg.propagation_seconds
        self.api = Api(TrafficError, name, cfg.url, timeout=cfg.timeout, hint=hint, secrets=secrets)
        self.where = self.api.where


def token_login(api: Api, cfg: HttpRegistryTraffic, password: str | None, path: str, *, key: str,
                user_field: str, form: bool = False) -> Login | None:
    """The login of a registry that hands out tokens (etcd, Nacos), when the config has a ``username``:
    ``POST path`` with ``{<user_field>: username, "password": password}`` (as JSON, or a form), the token in the
    answer's ``key``."""
    if not cfg.username:
        return None
    body = {user_field: cfg.username, "password": password or ""}
    return Login(api, path, user=cfg.username, password=password or "", key=key, **{"data" if form else "json": body})
