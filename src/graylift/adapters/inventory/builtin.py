"""The built-in CMDB: hosts kept in graylift's own database, imported from a host file (``hostfile``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.adapters.registry import Backend, Build
from graylift.core.model import Host
from graylift.errors import InventoryError, StoreError
from graylift.schema import Section
from graylift.store import Store


class BuiltinInventoryConfig(Section):
    """Hosts imported with `graylift hosts import` into the state database."""

    type: Literal["builtin"] = "builtin"


class BuiltinInventory:
    """The Inventory port over the store's host table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def from_config(cls, cfg: BuiltinInventoryConfig, build: Build) -> BuiltinInventory:
        if build.store is None:
            raise build.fail("the built-in inventory needs graylift's database", "type")
        return cls(build.store)

    async def hosts(self, app: str, env: str) -> list[Host]:
        try:
            hosts = self.store.list_hosts(app, env)
        except StoreError as exc:
            raise InventoryError(f"cannot read the built-in inventory: {exc}") from exc
        if not hosts:
            raise InventoryError(
                f"no hosts for app {app} in env {env}: import them with "
                f"`graylift hosts import {app} FILE --env {env}`"
            )
        return hosts


def import_hosts_file(store: Store, path: Path, app: str, env: str) -> list[Host]:
    """Parse ``path`` and make it the whole host list of app/env. Returns the hosts imported."""
    hosts = load_hosts_file(path)
    store.replace_hosts(app, env, hosts)
    return hosts


BACKEND = Backend(BuiltinInventoryConfig, BuiltinInventory.from_config)
