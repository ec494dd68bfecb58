"""Looking at a lab from the outside, independently of graylift: what tests and the demo assert on."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import unquote

from graylift.lab.files import ZOOKEEPER_SERVICES
from graylift.lab.info import LabInfo
from graylift.lab.lifecycle import host_exec


def host_versions(info: LabInfo, app: str) -> dict[str, str | None]:
    """host -> the version its ``current`` symlink points at (None when there is none)."""
    out: dict[str, str | None] = {}
    for host in info.hosts:
        res = host_exec(info, host.name, f"readlink /srv/{app}/current || true")
        link = res.stdout.strip()
        out[host.name] = link.rsplit("/", 1)[-1] if link else None
    return out


def serving_versions(info: LabInfo, app: str) -> dict[str, str]:
    """host -> the version the running app answers with on /health (or an error word)."""
    port = info.apps[app].port
    out: dict[str, str] = {}
    for host in info.hosts:
        res = host_exec(info, host.name, f"curl -s -m 3 http://127.0.0.1:{port}/health || echo DOWN")
        out[host.name] = res.stdout.strip().removeprefix("ok ").strip() or "DOWN"
    return out


@dataclass(frozen=True)
class ServerState:
    name: str
    op_state: int  # 2 = running (UP)
    admin_state: int  # 0 = ready; bit 0x01 maint, 0x08 drain, ...

    @property
    def serving(self) -> bool:
        return self.op_state == 2 and self.admin_state == 0


def haproxy_command(info: LabInfo, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(info.haproxy_socket)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def haproxy_servers(info: LabInfo, backend: str) -> dict[str, ServerState]:
    text = haproxy_command(info, f"show servers state {backend}")
    out: dict[str, ServerState] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or line.startswith("#") or not fields[0].isdigit():
            continue
        out[fields[3]] = ServerState(fields[3], int(fields[5]), int(fields[6]))
    return out


def active_silences(info: LabInfo) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"{info.alertmanager_url}/api/v2/silences", timeout=5) as resp:
        data = json.load(resp)
    return [s for s in data if s.get("status", {}).get("state") == "active"]


def zookeeper_overrides(info: LabInfo, service: str, root: str = "/dubbo") -> list[str]:
    """Dubbo override URLs under <root>/<service>/configurators (graylift's take-out marks)."""
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=info.zookeeper_address, timeout=5)
    zk.start(timeout=5)
    try:
        path = f"{root}/{service}/configurators"
        return [unquote(c) for c in zk.get_children(path)] if zk.exists(path) else []
    finally:
        zk.stop()
        zk.close()


def app_processes(info: LabInfo, pattern: str) -> dict[str, int]:
    """host -> how many processes match ``pattern`` (pgrep -f) inside that host's PID namespace."""
    unmatchable = f"{pattern[:-1]}[{pattern[-1]}]"  # so pgrep does not count the shell that runs it
    out: dict[str, int] = {}
    for host in info.hosts:
        res = host_exec(info, host.name, f"pgrep -fc '{unmatchable}' || true")
        out[host.name] = int(res.stdout.strip() or 0)
    return out


def app_pids(info: LabInfo, pattern: str) -> dict[str, list[str]]:
    """host -> the PID and start time (``/proc/PID/stat`` field 22) of each process matching ``pattern`` (pgrep -f)
    inside that host's PID namespace: unchanged only if nothing was restarted."""
    unmatchable = f"{pattern[:-1]}[{pattern[-1]}]"  # so pgrep does not match the shell that runs it
    command = f"for p in $(pgrep -f '{unmatchable}'); do echo $p $(cut -d' ' -f22 /proc/$p/stat); done"
    return {host.name: sorted(host_exec(info, host.name, command).stdout.split("\n")[:-1]) for host in info.hosts}


def nginx_down(info: LabInfo, app: str) -> list[str]:
    """Server lines marked ``down`` in the lab nginx's upstream file for ``app`` (read from disk, as nginx loads it)."""
    lines = Path(info.nginx_includes[app]).read_text().splitlines()
    return [line.strip() for line in lines if line.strip().startswith("server") and " down" in line]


def etcd_keys(url: str, prefix: str) -> dict[str, str]:
    """Every key under ``prefix`` in etcd (v3 HTTP/JSON gateway at ``url``) -> its value."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": b64(prefix), "range_end": b64(end)}).encode()
    req = urllib.request.Request(f"{url}/v3/kv/range", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        kvs = json.load(resp).get("kvs") or []
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode() for kv in kvs}


def etcd_key(info: LabInfo, app: str, host: str) -> str:
    """The key a lab host registers under in etcd (the ``etcd`` backend's default key template)."""
    return f"/services/{app}/{info.host(host).address}:{info.apps[app].port}"


def fleet_problems(info: LabInfo, app: str, version: str | Mapping[str, str | None], *, nginx: bool = True,
                   etcd_url: str | None = None, exempt: Collection[str] = (), settle: float = 15) -> list[str]:
    """Everything that is not as it should be, seen from outside graylift: each host's ``current`` link and
    what its app answers (``version``: one for all, or host -> version), HAProxy's runtime state, the nginx
    upstream file (``nginx``), Alertmanager's silences, ZooKeeper's overrides and (``etcd_url``) etcd's keys.
    Hosts in ``exempt`` (recorded needs_attention with a reason) are not checked. Empty when the fleet is
    clean."""
    expected = {h.name: version if isinstance(version, str) else version[h.name] for h in info.hosts}
    checked = [h for h in info.hosts if h.name not in exempt]
    linked, answers = host_versions(info, app), serving_versions(info, app)
    problems = [f"{h.name}: current -> {linked[h.name]}" for h in checked if linked[h.name] != expected[h.name]]
    problems += [f"{h.name}: answers {answers[h.name]}" for h in checked if answers[h.name] != expected[h.name]]
    deadline = time.monotonic() + settle
    servers = haproxy_servers(info, app)
    while not all(servers[h.name].serving for h in checked) and time.monotonic() < deadline:
        time.sleep(0.2)  # HAProxy's own check needs a moment to see a restarted app
        servers = haproxy_servers(info, app)
    problems += [f"{h.name}: not serving in HAProxy ({servers[h.name]})" for h in checked
                 if not servers[h.name].serving]
    exempt_addresses = [f"{info.host(h).address}:" for h in exempt]
    if nginx:
        problems += [f"nginx: {line}" for line in nginx_down(info, app)
                     if not any(a in line for a in exempt_addresses)]
    problems += [f"silence: {s['matchers']}" for s in active_silences(info)
                 if not any(m.get("value") in exempt for m in cast(list[dict[str, str]], s["matchers"]))]
    problems += [f"zookeeper: {o}" for o in zookeeper_overrides(info, ZOOKEEPER_SERVICES[app])
                 if not any(f"//{a}" in o for a in exempt_addresses)]
    if etcd_url:
        keys = etcd_keys(etcd_url, "/")
        problems += [f"etcd: {etcd_key(info, app, h.name)} missing" for h in checked
                     if etcd_key(info, app, h.name) not in keys]
        problems += [f"etcd: {k} parked" for k in keys
                     if k.startswith("/graylift/parked") and not any(a in k for a in exempt_addresses)]
    return problems
