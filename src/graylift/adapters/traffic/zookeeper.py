"""Dubbo service registry in ZooKeeper (kazoo): take a provider out with a Dubbo 2.7 override node.

take_out writes the persistent configurator
``<root>/<service>/configurators/<urlencoded override://{address}:{port}/{service}?...disabled=true...>``;
Dubbo consumers watching the configurators stop calling that provider. put_back deletes it.

is_in: the override node is absent AND, when any provider is registered under
``<root>/<service>/providers``, one of them is ``{address}:{port}`` (the app re-registered after its
restart). When nobody registers providers there at all (the registry only carries overrides for this
service), registration cannot be observed and only the override's absence counts.

Consumers cache the provider list: ``propagation_seconds`` is how long the take-out step waits for them
(once, for the slowest of its switches; again when a killed step is re-run).
kazoo is synchronous: its calls run in a worker thread, each bounded by ``timeout``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from graylift.adapters._preflight import every_host, listing
from graylift.adapters.registry import Backend, Build
from graylift.adapters.traffic._zk import ZkSession, children
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import Port, Seconds, Section, Text, ZkPath


def provider_addresses(children: Sequence[str]) -> set[tuple[str, int]]:
    """(address, port) of provider nodes (URL-encoded ``dubbo://address:port/service?...`` names)."""
    return {found for child in children if (found := provider_address(child)) is not None}


@functools.lru_cache(maxsize=1 << 16)
def provider_address(child: str) -> tuple[str, int] | None:
    """(address, port) of one provider node's name, None when it names none. Remembered: every host's put-back
    reads every provider of the service (1000 names of about 200 characters on a fleet of 1000), and they
    barely change between two reads."""
    try:
        url = urlsplit(unquote(child))
        return (url.hostname, url.port) if url.hostname and url.port else None
    except ValueError:
        return None


class ZookeeperTraffic(Section):
    """A Dubbo provider registration in ZooKeeper."""

    type: Literal["zookeeper"] = "zookeeper"
    hosts: Text
    root: ZkPath = "/dubbo"
    service: Text
    port: Port
    propagation_seconds: Seconds = 2.0


class ZookeeperSwitch:
    def __init__(self, cfg: ZookeeperTraffic, *, timeout: float = 10.0) -> None:
        self.cfg = cfg
        self.root = "/" + cfg.root.strip("/") if cfg.root.strip("/") else ""
        self.propagation_seconds = cfg.propagation_seconds
        self.name = f"zookeeper:{self.root}/{cfg.service}"
        self._zk = ZkSession(hosts=cfg.hosts, timeout=timeout, name=self.name)

    @classmethod
    def from_config(cls, cfg: ZookeeperTraffic, build: Build) -> ZookeeperSwitch:
        return cls(cfg)

    def override_url(self, host: Host) -> str:
        return (f"override://{host.address}:{self.cfg.port}/{self.cfg.service}"
                "?category=configurators&disabled=true&dynamic=false&enabled=true")

    def override_path(self, host: Host) -> str:
        return f"{self.root}/{self.cfg.service}/configurators/{quote(self.override_url(host), safe='')}"

    @property
    def providers_path(self) -> str:
        return f"{self.root}/{self.cfg.service}/providers"

    async def take_out(self, host: Host) -> None:
        path = self.override_path(host)

        def create(zk: KazooClient) -> None:
            with contextlib.suppress(NodeExistsError):
                zk.create(path, b"", makepath=True)

        await self._zk.call(create)
        if not await self.is_out(host):
            raise TrafficError(f"{self.name}: override node {path} is missing right after creating it")

    async def put_back(self, host: Host) -> None:
        path = self.override_path(host)

        def delete(zk: KazooClient) -> None:
            with contextlib.suppress(NoNodeError):
                zk.delete(path)

        await self._zk.call(delete)

    async def is_out(self, host: Host) -> bool:
        path = self.override_path(host)
        return await self._zk.call(lambda zk: zk.exists(path) is not None)

    async def is_in(self, host: Host) -> bool:
        if await self.is_out(host):
            return False
        providers = await self.providers()
        if not providers:
            return True
        return (host.address, self.cfg.port) in providers

    async def in_flight(self, host: Host) -> int | None:
        return None  # the registry cannot see open calls

    async def providers(self) -> set[tuple[str, int]]:
        """(address, port) of every provider registered under <root>/<service>/providers."""
        path = self.providers_path
        return provider_addresses(await self._zk.call(lambda zk: children(zk, path)))

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """ONE ZooKeeper round for all hosts: the providers and the override nodes. Writes nothing."""
        providers_path, overrides_path = self.providers_path, f"{self.root}/{self.cfg.service}/configurators"

        def read(zk: KazooClient) -> tuple[list[str], list[str]]:
            return children(zk, providers_path), children(zk, overrides_path)

        try:
            registered, overrides = await self._zk.call(read)
        except TrafficError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        providers = provider_addresses(registered)
        problems, out = [], []
        for host in hosts:
            if quote(self.override_url(host), safe="") in overrides:
                out.append(host.name)
            if providers and (host.address, self.cfg.port) not in providers:
                problems.append(f"{self.name}: {host.name}: no provider {host.address}:{self.cfg.port} under "
                                f"{providers_path} ({len(providers)} other(s) registered); is the app running "
                                "and registered with this address, and are service and port right?")
        if providers:
            notes = [f"{self.name}: {len(providers)} provider(s) registered under {providers_path}"]
        else:
            notes = [f"{self.name}: no provider registered under {providers_path}, so registration cannot be "
                     "checked: only the override nodes are written and verified (is service spelled as the "
                     "providers register it?)"]
        notes += listing(self.name, "override already present (out)", out)
        return Preflight(tuple(problems), tuple(notes))

    async def close(self) -> None:
        await self._zk.close()


BACKEND = Backend(ZookeeperTraffic, ZookeeperSwitch.from_config)
