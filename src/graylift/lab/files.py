"""The files a lab writes for graylift: ``graylift.yaml``, ``hosts.yaml`` and the HAProxy config.

The nginx config and includes are in ``graylift.lab.nginx``; ``start_rogue_nginx`` is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from graylift.errors import GrayliftError
from graylift.lab.info import LabHost, LabInfo
from graylift.lab.nginx import NGINX, rogue_address, start_rogue_nginx, upstream_name

__all__ = ["LOAD_BALANCERS", "graylift_config", "haproxy_config", "hosts_file", "nginx_traffic_entry",
           "rogue_address", "start_rogue_nginx"]

LOAD_BALANCERS = ("haproxy", "nginx")

ZOOKEEPER_SERVICES = {"pyapp": "com.graylift.lab.PyApp", "shop": "com.graylift.lab.Shop"}
DUBBO_PORT = 20880


def haproxy_config(socket_path: str, frontends: dict[str, int], app_ports: dict[str, int],
                   hosts: list[LabHost]) -> str:
    """One frontend on 127.0.0.1 and one backend per app; one server per host, named after the host."""
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        "    stats timeout 30s",
        "    maxconn 4000",
        "    log stderr format short local0 info",  # haproxy.log: only requests that did not end well
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlog-normal",
        "    retries 0",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "    timeout queue 5s",
        "    timeout check 2s",
        "",
    ]
    for app, port in frontends.items():
        lines += [f"frontend {app}", f"    bind 127.0.0.1:{port}", f"    default_backend {app}", "",
                  f"backend {app}", "    balance roundrobin", "    option httpchk GET /health"]
        lines += [f"    server {h.name} {h.address}:{app_ports[app]} check inter 500ms fall 2 rise 1"
                  for h in hosts]
        lines.append("")
    return "\n".join(lines)


def haproxy_traffic_entry(haproxy_socket: str, app: str) -> dict[str, Any]:
    return {"type": "haproxy", "socket": haproxy_socket, "backend": app, "server": "{host}", "drain_timeout": 10}


def nginx_traffic_entry(info: LabInfo, app: str) -> dict[str, Any]:
    """The ``type: nginx`` traffic entry for ``app``: the lab's nginx, on the controller (``lb_host: null``)."""
    return nginx_entry(include_path=info.nginx_includes[app], app=app, port=info.apps[app].port,
                       nginx_conf=info.nginx_conf)


def nginx_entry(*, include_path: str, app: str, port: int, nginx_conf: str) -> dict[str, Any]:
    return {"type": "nginx", "name": f"nginx-{app}", "include": include_path, "upstream": upstream_name(app),
            "port": port, "lb_host": None, "nginx_bin": NGINX, "nginx_conf": nginx_conf, "reload_settle": 0.5}


def zookeeper_traffic_entry(zookeeper: str, app: str) -> dict[str, Any]:
    return {"type": "zookeeper", "hosts": zookeeper, "root": "/dubbo", "service": ZOOKEEPER_SERVICES[app],
            "port": DUBBO_PORT, "propagation_seconds": 1}


def app_section(app: str, port: int, repository: str, traffic: list[dict[str, Any]],
                alertmanager_url: str, hosts: int = 10) -> dict[str, Any]:
    if app == "pyapp":
        package: dict[str, Any] = {"type": "tar.gz", "repository": repository}
        commands: dict[str, Any] = {"start": "sh {current}/bin/start", "stop": "sh {current}/bin/stop",
                                    "timeout": 20}
        process = "pyapp-server"
    else:
        package = {"type": "war", "repository": repository}
        commands = {"start": "sh /srv/shop/bin/tomcat-start {current}",
                    "stop": "sh /srv/shop/bin/tomcat-stop", "timeout": 60}
        process = "shop-server"
    return {
        "package": package,
        "deploy": {"dir": f"/srv/{app}", "keep_releases": 3},
        "commands": commands,
        "health": {
            "process": process,
            "tcp_port": port,
            "http": {"url": f"http://127.0.0.1:{port}/health", "status": 200, "body": "ok"},
            "retries": 120 if app == "shop" else 40,
            "interval": 0.25,
            "timeout": 5,
        },
        "traffic": traffic,
        "monitoring": [
            {"type": "alertmanager", "url": alertmanager_url, "label": "instance", "value": "{host}",
             "silence_minutes": 30},
        ],
        "quiet_period": 1,
        "strategy": {
            "canary": {"group": "beta", "count": 1, "bake": 5, "promote": "auto"},
            "batch": {"size": max(1, min(3, (hosts - 1) // 2))},  # under half the cluster, however small
            "max_parallel": 50,
            "pause": 0,
            "failure_budget": {"per_batch": 0, "total": 0},
            "on_failure": "pause",
            "on_unhealthy": "skip",
            "allow_half_or_more": False,
        },
    }


def check_lbs(lbs: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(lbs))
    unknown = [lb for lb in chosen if lb not in LOAD_BALANCERS]
    if not chosen or unknown:
        raise GrayliftError(f"unknown lab load balancer(s) {unknown or list(chosen)}: "
                            f"choose one or more of {', '.join(LOAD_BALANCERS)}")
    return chosen


def traffic_entries(app: str, port: int, lbs: Sequence[str], *, haproxy_socket: str, zookeeper: str,
                    nginx_includes: dict[str, str], nginx_conf: str) -> list[dict[str, Any]]:
    """The LBs in ``lbs`` order (HAProxy, nginx), then the ZooKeeper registry."""
    entries = []
    for lb in lbs:
        if lb == "haproxy":
            entries.append(haproxy_traffic_entry(haproxy_socket, app))
        else:
            entries.append(nginx_entry(include_path=nginx_includes[app], app=app, port=port,
                                       nginx_conf=nginx_conf))
    return [*entries, zookeeper_traffic_entry(zookeeper, app)]


def graylift_config(*, state_dir: str, client_key: str, known_hosts: str, artifact_base_url: str,
                    apps: dict[str, int], haproxy_socket: str, zookeeper: str,
                    alertmanager_url: str, lbs: Sequence[str] = ("haproxy",),
                    nginx_includes: dict[str, str] | None = None, nginx_conf: str = "", hosts: int = 10) -> str:
    config = {
        "state": f"sqlite:///{state_dir}/state.db",
        "ssh": {"user": "root", "port": 22, "key": client_key, "known_hosts": known_hosts,
                "connect_timeout": 10, "command_timeout": 120, "max_connections": 200},
        "repositories": {
            "lab": {"url": artifact_base_url + "/{app}/{version}/{app}-{version}.{ext}",
                    "sha256_url": "{url}.sha256", "versions_url": artifact_base_url + "/{app}/"},
        },
        "apps": {app: app_section(app, port, "lab", traffic_entries(
            app, port, lbs, haproxy_socket=haproxy_socket, zookeeper=zookeeper,
            nginx_includes=nginx_includes or {}, nginx_conf=nginx_conf), alertmanager_url, hosts)
                 for app, port in apps.items()},
    }
    header = ("# Written by `graylift lab up`; env: prod.\n"
              "# Hosts: graylift hosts import APP hosts.yaml --env prod\n")
    return header + yaml.safe_dump(config, sort_keys=False, width=110)


def hosts_file(hosts: list[LabHost]) -> str:
    """The built-in CMDB import format, one flow mapping per host."""
    lines = ["hosts:"]
    lines += [f"  - {{name: {h.name}, address: {h.address}, port: 22, user: root, group: {h.group}, "
              f"tags: {{zone: {h.zone}}}}}" for h in hosts]
    return "\n".join(lines) + "\n"
