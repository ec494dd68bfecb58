"""Monitoring systems (the Silencer port): one module per backend, listed here once.

The order is the order the config names the known types in.
"""

from __future__ import annotations

from graylift.adapters.monitoring import alertmanager, command, zabbix
from graylift.adapters.registry import Registry
from graylift.ports import Silencer

MONITORING: Registry[Silencer] = Registry([alertmanager.BACKEND, zabbix.BACKEND, command.BACKEND])
