"""Backends behind graylift.ports, grouped by port; one module per backend.

    traffic/      TrafficSwitch: haproxy, nginx (+ nginx_conf), nginx_plus, zookeeper, dubbo3 (+ _zk), etcd,
                  nacos, consul, eureka (+ _registry_base: their shared keys), command; TRAFFIC lists them
    monitoring/   Silencer: alertmanager, zabbix, command; MONITORING lists them
    inventory/    Inventory: builtin (+ hostfile, ansible: the host-file import), netbox, http; INVENTORY
    transport/    Transport / Connector: ssh, local
    artifacts.py  ArtifactStore: HTTP repositories and local dirs
    health.py     HealthProbe: process, tcp, http, command probes, and the health section
    observer.py   who still sends traffic to a host (the traffic check)
    registry.py   Build, Backend, Registry: a backend found by its config type
    _http.py      every HTTP backend's requests, errors translated once; Api, Login
    _preflight.py _limits.py   small shared helpers

A backend module holds its config model, its adapter and ``from_config``; docs/traffic.md says how to add one.
"""
