"""Real servers for the adapter tests, started once per session with graylift.lab.services and torn down."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from graylift.adapters.transport.ssh import SshConfig, SshConnector
from graylift.core.model import Host
from graylift.lab import services

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: sshd with its own host key runs as root")


def parent_of(pid: int) -> int | None:
    """The parent pid of process ``pid`` (from /proc), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def ssh_connector(sshd: Sshd, *, known_hosts: Path | None = None, key: Path | None = None) -> SshConnector:
    """A connector to the ``sshd`` fixture's server (its known_hosts and client key unless given)."""
    return SshConnector(SshConfig(known_hosts=known_hosts or sshd.known_hosts, key=key or sshd.client_key,
                                  connect_timeout=5, command_timeout=30))


def ssh_host(sshd: Sshd, port: int | None = None) -> Host:
    """The ``sshd`` fixture's server as host h1 (root@127.0.0.1, its port unless given)."""
    return Host(name="h1", address="127.0.0.1", port=port or sshd.port, user="root")


def freeze_soon(seconds: float, after: float = 0.1) -> None:
    """The controller stops running ``after`` seconds from now, for ``seconds``: its event loop is blocked,
    which is what a SIGSTOP, a starved CPU or a paused VM look like from inside (every timer goes off late);
    servers and threads go on. The real SIGSTOP of a controller: tests/engine/test_starved_controller.py."""
    asyncio.get_running_loop().call_later(after, time.sleep, seconds)

# A tiny HTTP app: /health -> "ok", /slow?s=N -> waits N seconds, / -> its name.
APP = r'''
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

NAME = sys.argv[2]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    disable_nagle_algorithm = True

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
        body = b"ok\n" if url.path == "/health" else f"{NAME}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="graylift-adapters-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class App:
    name: str
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def apps(workdir: Path) -> Iterator[list[App]]:
    """Two small Python HTTP servers on 127.0.0.1 (the HAProxy backend servers and health probe targets)."""
    script = workdir / "graylift_test_app.py"
    script.write_text(APP)
    started: list[App] = []
    try:
        for name in ("app1", "app2"):
            port = services.free_port()
            proc = subprocess.Popen([sys.executable, str(script), str(port), name], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            started.append(App(name, port, proc))
            services.wait_for_port("127.0.0.1", port, 10)
        yield started
    finally:
        for app in started:
            app.process.terminate()
            app.process.wait(timeout=10)


@dataclass
class Haproxy:
    socket: str
    web_port: int  # frontend -> backend "web" (app1, app2)
    one_port: int  # frontend -> backend "one" (app1 only)
    service: services.Service
    operator_socket: str = ""  # a second stats socket at level operator (cannot set server states)


@pytest.fixture(scope="session")
def haproxy(workdir: Path, apps: list[App]) -> Iterator[Haproxy]:
    sock, operator = str(workdir / "haproxy.sock"), str(workdir / "haproxy-op.sock")
    web_port, one_port, dead_port = services.free_port(), services.free_port(), services.free_port()
    config = f"""\
global
    stats socket {sock} mode 600 level admin
    stats socket {operator} mode 600 level operator
    stats timeout 10s
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    default-server inter 200ms fall 2 rise 1
backend web
    option httpchk GET /health
    server app1 127.0.0.1:{apps[0].port} check
    server app2 127.0.0.1:{apps[1].port} check
backend one
    option httpchk GET /health
    server app1 127.0.0.1:{apps[0].port} check
backend dead
    server gone 127.0.0.1:{dead_port} check
frontend web
    bind 127.0.0.1:{web_port}
    default_backend web
frontend one
    bind 127.0.0.1:{one_port}
    default_backend one
"""
    service = services.start_haproxy(workdir / "haproxy", config)
    yield Haproxy(sock, web_port, one_port, service, operator)
    services.stop_service(service)


@pytest.fixture(scope="session")
def zookeeper(workdir: Path) -> Iterator[services.Service]:
    service = services.start_zookeeper(workdir / "zookeeper", services.free_port())
    yield service
    services.stop_service(service)


@pytest.fixture(scope="session")
def alertmanager(workdir: Path) -> Iterator[services.Service]:
    service = services.start_alertmanager(workdir / "alertmanager", services.free_port())
    yield service
    services.stop_service(service)


@dataclass
class Sshd:
    port: int
    known_hosts: Path
    client_key: Path
    other_key: Path  # a key sshd does not accept
    service: services.Service


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def sshd(workdir: Path) -> Iterator[Sshd]:
    if not IS_ROOT:
        pytest.skip("needs root: sshd with its own host key runs as root")
    keys = workdir / "client"
    keys.mkdir()
    client_key, other_key = _keygen(keys / "id_ed25519"), _keygen(keys / "other_ed25519")
    port = services.free_port()
    service = services.start_sshd(workdir / "sshd", port,
                                  authorized_key=(keys / "id_ed25519.pub").read_text())
    yield Sshd(port, workdir / "sshd" / "known_hosts", client_key, other_key, service)
    services.stop_service(service)
