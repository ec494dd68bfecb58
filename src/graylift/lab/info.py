"""What a running lab is: paths, hosts, ports and URLs, saved as ``lab.json`` in its state dir."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from graylift.errors import GrayliftError

DEFAULT_STATE_ROOT = Path("/var/lib/graylift-lab")
RUN_ROOT = Path("/run/graylift-lab")  # unix sockets: short paths (HAProxy allows 97 characters)


def run_dir_for(name: str) -> Path:
    return RUN_ROOT / name


def state_dir_for(name: str, state_root: Path | None = None) -> Path:
    return (state_root or DEFAULT_STATE_ROOT) / name


@dataclass
class LabHost:
    name: str
    index: int
    address: str
    group: str
    zone: str
    netns: str
    veth: str
    pid: int  # host-side PID of the host's PID 1 (sshd)
    dir: str  # per-host directory: srv/ and root/ are bind-mounted over /srv and /root


@dataclass
class LabApp:
    name: str
    port: int  # the port the app listens on, on every host
    frontend_url: str  # HAProxy frontend on 127.0.0.1
    deploy_dir: str
    nginx_url: str = ""  # nginx frontend on 127.0.0.1


@dataclass
class LabInfo:
    name: str
    state_dir: str
    config_path: str
    hosts_file: str
    client_key: str
    known_hosts: str
    bridge: str
    bridge_address: str
    subnet: str
    hosts: list[LabHost]
    apps: dict[str, LabApp]
    haproxy_socket: str
    zookeeper_address: str
    alertmanager_url: str
    artifact_base_url: str
    artifact_dir: str
    pidfiles: dict[str, str] = field(default_factory=dict)  # service name -> pidfile
    nginx_conf: str = ""  # the lab nginx's main config (``nginx -c``; names its pid file and error log)
    nginx_pidfile: str = ""  # written by nginx itself (the master's pid)
    nginx_includes: dict[str, str] = field(default_factory=dict)  # app -> the file of server lines graylift edits
    nginx_layout: str = "block-in-include"  # or "include-inside-upstream" (graylift.lab.nginx.LAYOUTS)
    prometheus_url: str = ""  # the lab's Prometheus, when `lab up` started one

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / "lab.json"

    def host(self, host_name: str) -> LabHost:
        for host in self.hosts:
            if host.name == host_name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise GrayliftError(f"lab {self.name!r} has no host {host_name!r} (hosts: {known})")

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.path)

    @classmethod
    def load(cls, name: str = "lab", state_root: Path | None = None) -> LabInfo:
        path = state_dir_for(name, state_root) / "lab.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise GrayliftError(f"lab {name!r} is not up ({path} does not exist): "
                                "run `graylift lab up`") from None
        except (OSError, ValueError) as exc:
            raise GrayliftError(f"{path}: cannot read the lab's state: {exc}") from exc
        data["hosts"] = [LabHost(**h) for h in data["hosts"]]
        data["apps"] = {k: LabApp(**v) for k, v in data["apps"].items()}
        return cls(**data)
