"""Looking at a lab from the outside, independently of graylift: what tests and the demo assert on."""

from __future__ import annotations

import json
import socket
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote

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
