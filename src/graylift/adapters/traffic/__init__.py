"""Load balancers and service registries (the TrafficSwitch port): one module per backend, listed here once.

The order is the order the config names the known types in.
"""

from __future__ import annotations

from graylift.adapters.registry import Registry
from graylift.adapters.traffic import (
    command,
    consul,
    dubbo3,
    etcd,
    eureka,
    haproxy,
    nacos,
    nginx,
    nginx_plus,
    zookeeper,
)
from graylift.ports import TrafficSwitch

TRAFFIC: Registry[TrafficSwitch] = Registry([
    haproxy.BACKEND, zookeeper.BACKEND, nginx.BACKEND, nginx_plus.BACKEND, command.BACKEND, etcd.BACKEND,
    dubbo3.BACKEND, nacos.BACKEND, consul.BACKEND, eureka.BACKEND,
])
