"""Dubbo 3 application-level providers on ZooKeeper: take an address out with a v3 configurator rule.

The rule lives at ``<root>/config/<group>/<application>.configurators`` (Dubbo's config centre on ZK,
defaults ``/dubbo/config/dubbo/<application>.configurators``)::

    configVersion: v3.0
    scope: application
    key: <application>
    enabled: true
    configs:
    - side: provider
      addresses: ["10.0.0.5:20880"]
      parameters: {disabled: "true"}

take_out adds one such entry for the host's ``address:port`` (``"true"`` is written as a string: Dubbo
reads ``parameters`` as a string map). put_back removes exactly the entries of that shape for that
address and leaves every other entry alone; when no entry is left the node is deleted. Every write
is a compare-and-set on the ZK node version (retried on a concurrent change), so rules other tools
wrote at the same time are never clobbered.

is_out: the rule is enabled and some provider entry (enabled, not limited to other services or
applications) lists the address with ``disabled`` true. is_in: not is_out and, when any instance is
registered under ``<instances_root>/<application>`` (Dubbo 3 service discovery), the host's
``address:port`` is one of them. ``propagation_seconds``: how long the take-out step waits for consumers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import yaml
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from graylift.adapters._preflight import every_host, listing
from graylift.adapters.registry import Backend, Build
from graylift.adapters.traffic._registry_base import RegistryTraffic
from graylift.adapters.traffic._zk import ZkSession, children
from graylift.core.model import Host
from graylift.errors import TrafficError
from graylift.ports import Preflight
from graylift.schema import Port, Text, ZkPath

CAS_ATTEMPTS = 10


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class Dubbo3Traffic(RegistryTraffic):
    """Dubbo 3 application-level providers on ZooKeeper: a v3 configurator rule disables the address."""

    type: Literal["dubbo3"] = "dubbo3"
    hosts: Text
    application: Text
    port: Port
    root: ZkPath = "/dubbo"
    group: Text = "dubbo"
    instances_root: ZkPath = "/services"


class Dubbo3Switch:
    def __init__(self, cfg: Dubbo3Traffic) -> None:
        self.cfg = cfg
        self.root = "/" + cfg.root.strip("/") if cfg.root.strip("/") else ""
        self.instances_root = "/" + cfg.instances_root.strip("/")
        self.propagation_seconds = cfg.propagation_seconds
        self.name = f"dubbo3:{self.rule_path}"
        self._zk = ZkSession(hosts=cfg.hosts, timeout=cfg.timeout, name=self.name)

    @classmethod
    def from_config(cls, cfg: Dubbo3Traffic, build: Build) -> Dubbo3Switch:
        return cls(cfg)

    @property
    def rule_path(self) -> str:
        return f"{self.root}/config/{self.cfg.group}/{self.cfg.application}.configurators"

    def address(self, host: Host) -> str:
        return f"{host.address}:{self.cfg.port}"

    def entry(self, host: Host) -> dict[str, Any]:
        return {"side": "provider", "addresses": [self.address(host)], "parameters": {"disabled": "true"}}

    # ------------------------------------------------------------------ TrafficSwitch

    async def take_out(self, host: Host) -> None:
        await self._update(lambda rule: self._add(rule, host))
        if not await self.is_out(host):
            raise TrafficError(f"{self.name}: {self.address(host)} is not disabled after writing the rule; "
                               "is the rule (or one of its entries) set to enabled: false?")

    async def put_back(self, host: Host) -> None:
        await self._update(lambda rule: self._remove(rule, host))

    async def is_out(self, host: Host) -> bool:
        rule, _ = await self._read()
        return rule is not None and self._disables(rule, host)

    async def is_in(self, host: Host) -> bool:
        if await self.is_out(host):
            return False
        registered = await self.instances()
        return not registered or self.address(host) in registered

    async def in_flight(self, host: Host) -> int | None:
        return None

    async def rule(self) -> dict[str, Any] | None:
        """The configurator rule as stored now (None when there is none)."""
        return (await self._read())[0]

    async def instances(self) -> set[str]:
        """Children of <instances_root>/<application>: Dubbo 3 names instances ``ip:port``."""
        path = self.instances_path
        return set(await self._zk.call(lambda zk: children(zk, path)))

    @property
    def instances_path(self) -> str:
        return f"{self.instances_root}/{self.cfg.application}"

    async def preflight(self, hosts: Sequence[Host]) -> Preflight:
        """ONE ZooKeeper round for all hosts: the rule (must parse) and the registered instances."""
        rule_path, instances_path = self.rule_path, self.instances_path

        def read(zk: KazooClient) -> tuple[bytes | None, list[str]]:
            try:
                data: bytes | None = zk.get(rule_path)[0]
            except NoNodeError:
                data = None
            return data, children(zk, instances_path)

        try:
            data, listed = await self._zk.call(read)
            rule = self._parse(data)
        except TrafficError as exc:
            return Preflight(problems=(every_host(self.name, exc),))
        registered = set(listed)
        problems, out = [], []
        for host in hosts:
            if rule is not None and self._disables(rule, host):
                out.append(host.name)
            if registered and self.address(host) not in registered:
                problems.append(f"{self.name}: {host.name}: no instance {self.address(host)} under {instances_path} "
                                f"({len(registered)} other(s) registered); is the app running and registered "
                                "with this address, and are application and port right?")
        if registered:
            notes = [f"{self.name}: {len(registered)} instance(s) registered under {instances_path}"]
        else:
            notes = [f"{self.name}: no instance registered under {instances_path}, so registration cannot be "
                     "checked: only the rule is written and verified (is application spelled as Dubbo names it?)"]
        notes += listing(self.name, "already disabled by the rule", out)
        return Preflight(tuple(problems), tuple(notes))

    # ------------------------------------------------------------------ rule editing

    def _add(self, rule: dict[str, Any] | None, host: Host) -> dict[str, Any] | None:
        if rule is None:
            rule = {"configVersion": "v3.0", "scope": "application", "key": self.cfg.application, "enabled": True,
                    "configs": []}
        if self._ours(rule, host):
            return None  # already there: no write
        rule.setdefault("configs", []).append(self.entry(host))
        return rule

    def _remove(self, rule: dict[str, Any] | None, host: Host) -> dict[str, Any] | None:
        if rule is None or not self._ours(rule, host):
            return None
        rule["configs"] = [item for item in rule.get("configs") or [] if not self._is_our_entry(item, host)]
        return rule

    def _is_our_entry(self, item: Any, host: Host) -> bool:
        return (isinstance(item, dict) and item.get("side") == "provider"
                and item.get("addresses") == [self.address(host)]
                and set(item) <= {"side", "addresses", "parameters"}
                and isinstance(item.get("parameters"), dict) and set(item["parameters"]) == {"disabled"}
                and _is_true(item["parameters"]["disabled"]))

    def _ours(self, rule: dict[str, Any], host: Host) -> bool:
        return any(self._is_our_entry(item, host) for item in rule.get("configs") or [])

    def _disables(self, rule: dict[str, Any], host: Host) -> bool:
        if rule.get("enabled") is False:
            return False
        for item in rule.get("configs") or []:
            if not isinstance(item, dict) or item.get("enabled") is False:
                continue
            if item.get("side", "provider") != "provider":
                continue
            if item.get("services") or (item.get("applications") and self.cfg.application
                                        not in item["applications"]):
                continue
            addresses = item.get("addresses") or []
            if self.address(host) not in addresses and host.address not in addresses and "0.0.0.0" not in addresses:
                continue
            if _is_true((item.get("parameters") or {}).get("disabled")):
                return True
        return False

    # ------------------------------------------------------------------ ZooKeeper

    async def _read(self) -> tuple[dict[str, Any] | None, int | None]:
        path = self.rule_path

        def get(zk: KazooClient) -> tuple[bytes | None, int | None]:
            try:
                data, stat = zk.get(path)
                return data, stat.version
            except NoNodeError:
                return None, None

        data, version = await self._zk.call(get)
        return self._parse(data), version

    def _parse(self, data: bytes | None) -> dict[str, Any] | None:
        """The rule stored in the node (None when there is none); TrafficError when it is not a configurator."""
        if not data:
            return None
        try:
            rule = yaml.safe_load(data.decode())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            detail = " ".join(str(exc).split())
            raise TrafficError(f"{self.name}: the rule in ZooKeeper is not valid YAML ({detail}); fix or delete "
                               "it in Dubbo Admin") from exc
        if rule is None:
            return None
        if not isinstance(rule, dict) or not isinstance(rule.get("configs") or [], list):
            raise TrafficError(f"{self.name}: the rule in ZooKeeper is not a configurator (mapping with a "
                               "`configs` list); fix or delete it in Dubbo Admin")
        return rule

    async def _update(self, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> None:
        """Read, change, write back with the node version; None from ``change`` means nothing to do."""
        path = self.rule_path
        for _ in range(CAS_ATTEMPTS):
            rule, version = await self._read()
            new = change(rule)
            if new is None:
                return
            data = yaml.safe_dump(new, sort_keys=False, default_flow_style=False).encode()

            def write(zk: KazooClient, data: bytes = data, version: int | None = version,
                      empty: bool = not new.get("configs")) -> bool:
                try:
                    if version is None:
                        zk.create(path, data, makepath=True)
                    elif empty:
                        zk.delete(path, version=version)
                    else:
                        zk.set(path, data, version=version)
                    return True
                except (BadVersionError, NodeExistsError, NoNodeError):
                    return False

            if await self._zk.call(write):
                return
        raise TrafficError(f"{self.name}: the rule kept changing under us ({CAS_ATTEMPTS} attempts); "
                           "is another tool rewriting it in a loop?")

    async def close(self) -> None:
        await self._zk.close()


BACKEND = Backend(Dubbo3Traffic, Dubbo3Switch.from_config)
