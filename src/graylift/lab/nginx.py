"""The lab's nginx: a real Debian nginx in the root namespace, next to HAProxy, plus an optional "rogue" one.

Each nginx is its own master process (``daemon off``, so the lab's pidfile is the master's pid) with
its config, pid file, error log and temp dirs in its own directory of the lab's state dir; it reads
nothing from ``/etc/nginx`` (so the package's default site on port 80 is never loaded). Per app one
``server`` on 127.0.0.1 proxying to ``upstream <app>_upstream``. Two layouts (``LAYOUTS``):

- ``block-in-include`` (default): the whole ``upstream`` block lives in its own include file
  (``<app>_upstream.conf``, included at http level);
- ``include-inside-upstream``: nginx.conf holds ``upstream <app>_upstream { include upstreams/<app>.conf;
  keepalive 16; }`` and ``upstreams/<app>.conf`` only the ``server`` lines.

Either way the file with the ``server`` lines is the app's entry in ``includes``: the file graylift's
NginxSwitch edits (``down`` flags) before ``nginx -s reload``.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from graylift.errors import GrayliftError
from graylift.lab import services
from graylift.lab.info import LabHost, LabInfo

NGINX = "/usr/sbin/nginx"
KEEPALIVE = 16
READY_TIMEOUT = 15.0
BLOCK_IN_INCLUDE = "block-in-include"
INCLUDE_INSIDE_UPSTREAM = "include-inside-upstream"
LAYOUTS = (BLOCK_IN_INCLUDE, INCLUDE_INSIDE_UPSTREAM)


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise GrayliftError(f"unknown nginx layout {layout!r}: choose {' or '.join(LAYOUTS)}")
    return layout


def upstream_name(app: str) -> str:
    return f"{app}_upstream"


def upstream_include(app: str, port: int, hosts: Sequence[LabHost]) -> str:
    """``upstream <app>_upstream``: one ``server`` line per host (never marked failed by nginx itself)."""
    lines = ["# graylift lab: graylift's NginxSwitch toggles 'down' on these lines",
             f"upstream {upstream_name(app)} {{"]
    lines += [f"    server {h.address}:{port} max_fails=0;" for h in hosts]
    lines += [f"    keepalive {KEEPALIVE};", "}"]
    return "\n".join(lines) + "\n"


def upstream_servers(port: int, hosts: Sequence[LabHost]) -> str:
    """The include of layout ``include-inside-upstream``: only the ``server`` lines."""
    lines = ["# graylift lab: included inside upstream; graylift's NginxSwitch toggles 'down' on these lines"]
    lines += [f"server {h.address}:{port} max_fails=0;" for h in hosts]
    return "\n".join(lines) + "\n"


def nginx_config(workdir: Path, frontends: Mapping[str, int], includes: Mapping[str, str], *,
                 bind_address: str | None = None, listen: str = "127.0.0.1", layout: str = BLOCK_IN_INCLUDE) -> str:
    """The main config: pid, error log and temp dirs in ``workdir``; one 127.0.0.1 server per app.

    ``bind_address``: the source address of connections to the upstreams (``proxy_bind``). ``layout``: where
    ``includes`` go (at http level, or inside each ``upstream`` block, relative to ``workdir`` when under it).
    """
    bind = [f"        proxy_bind {bind_address};"] if bind_address else []
    lines = [
        "# graylift lab nginx: nothing from /etc/nginx is read",
        "user root;  # the lab runs as root; its dirs are 0700",
        "worker_processes 1;",
        f"pid {workdir / 'nginx.pid'};",
        f"error_log {workdir / 'error.log'} notice;",
        "events { worker_connections 1024; }",
        "http {",
        "    access_log off;",
        f"    client_body_temp_path {workdir / 'tmp' / 'client_body'};",
        f"    proxy_temp_path {workdir / 'tmp' / 'proxy'};",
        f"    fastcgi_temp_path {workdir / 'tmp' / 'fastcgi'};",
        f"    uwsgi_temp_path {workdir / 'tmp' / 'uwsgi'};",
        f"    scgi_temp_path {workdir / 'tmp' / 'scgi'};",
        "    proxy_connect_timeout 2s;",
        "    proxy_read_timeout 30s;",
    ]
    for app in frontends:
        if check_layout(layout) == BLOCK_IN_INCLUDE:
            lines.append(f"    include {includes[app]};")
            continue
        include = Path(includes[app])
        relative = include.relative_to(workdir) if include.is_relative_to(workdir) else include
        lines += [f"    upstream {upstream_name(app)} {{", f"        include {relative};  # only server lines",
                  f"        keepalive {KEEPALIVE};", "    }"]
    for app, port in frontends.items():
        lines += [
            "    server {",
            f"        listen {listen}:{port};",
            "        location / {",
            f"            proxy_pass http://{upstream_name(app)};",
            "            proxy_next_upstream off;",
            "            proxy_http_version 1.1;",
            '            proxy_set_header Connection "";',
            # the client's Host: nginx's default would send "<app>_upstream", which Tomcat rejects (400: '_')
            "            proxy_set_header Host $http_host;",
            *["    " + line for line in bind],
            "        }",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Nginx:
    service: services.Service
    conf: Path
    pidfile: Path  # nginx's own pid file (the same pid as service.pidfile)
    includes: dict[str, str]  # app -> the file with the upstream's server lines
    urls: dict[str, str]  # app -> http://127.0.0.1:<port>
    layout: str = BLOCK_IN_INCLUDE


def _check(conf: Path) -> None:
    done = subprocess.run([NGINX, "-e", str(conf.parent / "error.log"), "-t", "-q", "-c", str(conf)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GrayliftError(f"nginx rejected {conf}:\n{(done.stdout + done.stderr).strip()}")


def start_nginx(workdir: Path, hosts: Sequence[LabHost], app_ports: Mapping[str, int],
                frontends: Mapping[str, int], *, bind_address: str | None = None,
                layout: str = BLOCK_IN_INCLUDE) -> Nginx:
    """Write the config and the includes (in ``layout``) into ``workdir``, check them (``nginx -t``), start
    the master, return once every frontend accepts connections."""
    check_layout(layout)
    if not Path(NGINX).exists():
        raise GrayliftError(f"{NGINX} is missing: apt-get install nginx (the lab's second load balancer)")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    includes = {}
    for app, port in app_ports.items():
        if layout == BLOCK_IN_INCLUDE:
            include, text = workdir / f"{upstream_name(app)}.conf", upstream_include(app, port, hosts)
        else:
            (workdir / "upstreams").mkdir(exist_ok=True)
            include, text = workdir / "upstreams" / f"{app}.conf", upstream_servers(port, hosts)
        include.write_text(text)
        includes[app] = str(include)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(workdir, frontends, includes, bind_address=bind_address, layout=layout))
    _check(conf)
    argv = [NGINX, "-e", str(workdir / "error.log"), "-c", str(conf), "-g", "daemon off; master_process on;"]
    service = services._spawn("nginx", argv, workdir, None)
    try:
        for port in frontends.values():
            services.wait_for_port("127.0.0.1", port, READY_TIMEOUT, log=workdir / "error.log", pid=service.pid)
        # the master listens before it forks its workers (and before it names itself "nginx: master"): ready
        # means a worker is there too, so whoever counts the lab's nginx processes next sees them all
        deadline = time.monotonic() + READY_TIMEOUT
        while not _has_child(service.pid):
            if time.monotonic() >= deadline:
                raise GrayliftError(f"nginx {service.pid} started no worker within {READY_TIMEOUT:g}s; log:\n"
                                    + services.log_tail(workdir / "error.log"))
            time.sleep(0.02)
    except BaseException:
        services.stop_service(service)
        raise
    return Nginx(service=service, conf=conf, pidfile=workdir / "nginx.pid", includes=includes,
                 urls={app: f"http://127.0.0.1:{port}" for app, port in frontends.items()}, layout=layout)


# The rogue nginx ------------------------------------------------------------------------------------


def rogue_address(info: LabInfo) -> str:
    """The bridge's address minus one (``10.213.x.253``): inside the lab's subnet, never a host's."""
    return str(ipaddress.IPv4Address(info.bridge_address) - 1)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise GrayliftError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def start_rogue_nginx(info: LabInfo, app: str) -> tuple[str, Callable[[], None]]:
    """A second nginx that graylift's config does not know, proxying to ``app`` on every host from its own
    source address (``rogue_address``, added to the lab's bridge). Returns (its URL, a function that stops
    it and removes the address; idempotent). ``lab down`` stops it too, if the caller did not."""
    if app not in info.apps:
        raise GrayliftError(f"lab {info.name!r} has no app {app!r} (apps: {', '.join(info.apps)})")
    address = rogue_address(info)
    cidr = f"{address}/32"  # a /32: the bridge's /20 route (and its source address) stay as they are
    workdir = Path(info.state_dir) / "services" / f"nginx-rogue-{app}"
    if workdir.exists():
        raise GrayliftError(f"a rogue nginx for {app} already runs in lab {info.name!r} ({workdir}); "
                            "stop it first")
    _ip("addr", "add", cidr, "dev", info.bridge)
    try:
        nginx = start_nginx(workdir, info.hosts, {app: info.apps[app].port}, {app: services.free_port()},
                            bind_address=address)
    except BaseException:
        _ip("addr", "del", cidr, "dev", info.bridge, check=False)
        raise

    def stop() -> None:
        services.stop_service(nginx.service, timeout=5)
        if _has_address(info.bridge, address):
            _ip("addr", "del", cidr, "dev", info.bridge, check=False)
        shutil.rmtree(workdir, ignore_errors=True)

    return nginx.urls[app], stop


def _has_address(device: str, address: str) -> bool:
    done = _ip("-4", "-o", "addr", "show", "dev", device, check=False)
    return any(line.split()[3].split("/")[0] == address for line in done.stdout.splitlines()
               if len(line.split()) > 3)


def _has_child(pid: int) -> bool:
    """Whether a process has ``pid`` as its parent (nginx's master has forked a worker)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    return True
            except (OSError, ValueError, IndexError):
                continue
    return False
