"""The built-in CMDB: hosts kept in graylift's own database, imported from a host file (``hostfile``)."""

from __future__ import annotations

from pathlib import Path

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.model import Host
from graylift.errors import InventoryError, StoreError
from graylift.store import Store


class BuiltinInventory:
    """The Inventory port over the store's host table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def hosts(self, app: str, env: str) -> list[Host]:
        try:
            hosts = self.store.list_hosts(app, env)
        except StoreError as exc:
            raise InventoryError(f"cannot read the built-in inventory: {exc}") from exc
        if not hosts:
            raise InventoryError(
                f"no hosts for app {app} in env {env}: import them with "
                f"`graylift hosts import FILE --app {app} --env {env}`"
            )
        return hosts


def import_hosts_file(store: Store, path: Path, app: str, env: str) -> list[Host]:
    """Parse ``path`` and make it the whole host list of app/env. Returns the hosts imported."""
    hosts = load_hosts_file(path)
    store.replace_hosts(app, env, hosts)
    return hosts
