"""CMDBs (the Inventory port): one module per source, listed here once.

The order is the order the config names the known types in.
"""

from __future__ import annotations

from graylift.adapters.inventory import builtin, http, netbox
from graylift.adapters.registry import Registry
from graylift.ports import Inventory

INVENTORY: Registry[Inventory] = Registry([builtin.BACKEND, netbox.BACKEND, http.BACKEND])
