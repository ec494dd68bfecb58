"""Real nginx (Debian 1.22) and small counting HTTP backends for the nginx adapter tests.

Each backend is a Python ``http.server`` on its own loopback address (127.0.0.x) and one shared port, like
the hosts of one app; it answers its name, so a client counts which backend served each request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from graylift.errors import GrayliftError
from graylift.lab import services

BACKEND = r'''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[3]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        body = f"{NAME}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
'''


@dataclass
class Backend:
    name: str
    address: str
    port: int
    process: subprocess.Popen[bytes]


def start_backends(workdir: Path, names: list[str], first_address: int = 11) -> list[Backend]:
    """Backends ``names`` on 127.0.0.<first_address + i>, all on one free port."""
    script = workdir / "nginx_backend.py"
    script.write_text(BACKEND)
    port = services.free_port()
    started: list[Backend] = []
    try:
        for i, name in enumerate(names):
            address = f"127.0.0.{first_address + i}"
            proc = subprocess.Popen([sys.executable, str(script), address, str(port), name],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            started.append(Backend(name, address, port, proc))
            services.wait_for_port(address, port, 10, pid=proc.pid)
    except BaseException:
        stop_backends(started)
        raise
    return started


def stop_backends(backends: list[Backend]) -> None:
    for backend in backends:
        if backend.process.poll() is None:
            backend.process.terminate()
        backend.process.wait(timeout=10)


BLOCK_IN_INCLUDE = "block-in-include"  # upstreams/web.conf holds "upstream web { server ...; }"
INCLUDE_INSIDE_UPSTREAM = "include-inside-upstream"  # nginx.conf: "upstream web { include servers/web.conf; }"


@dataclass
class Nginx:
    workdir: Path
    conf: Path
    port: int  # the frontend: proxy_pass http://web (proxy_next_upstream off)
    upstreams: Path  # include directory: <upstreams>/*.conf
    pidfile: Path
    error_log: Path
    include: Path  # the file holding the server lines of upstream web
    layout: str = BLOCK_IN_INCLUDE
    extra: dict[str, str] = field(default_factory=dict)

    def master_pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])

    def worker_pids(self) -> set[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.master_pid())], capture_output=True,
                             text=True, check=False).stdout
        return {int(p) for p in out.split()}

    def reload(self) -> None:
        subprocess.run(["nginx", "-c", str(self.conf), "-s", "reload"], check=True, capture_output=True)


def start_nginx(workdir: Path, upstream_text: str, layout: str = BLOCK_IN_INCLUDE) -> Nginx:
    """An nginx master (daemon) with a frontend to upstream web.

    ``layout`` BLOCK_IN_INCLUDE: ``upstreams/web.conf = upstream_text`` (the whole block), included at http
    level with ``upstreams/*.conf``. INCLUDE_INSIDE_UPSTREAM: nginx.conf holds ``upstream web { include
    servers/web.conf; keepalive 8; }`` (a relative include) and ``servers/web.conf = upstream_text`` (bare
    server lines); ``upstreams/*.conf`` is still included at http level.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    upstreams = workdir / "upstreams"
    upstreams.mkdir(exist_ok=True)
    if layout == BLOCK_IN_INCLUDE:
        include, block = upstreams / "web.conf", ""
    else:
        (workdir / "servers").mkdir(exist_ok=True)
        include = workdir / "servers" / "web.conf"
        block = ("    upstream web {\n        include servers/web.conf;  # server lines only\n"
                 "        keepalive 8;\n    }")
    include.write_text(upstream_text)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    port = services.free_port()
    pidfile, error_log = workdir / "nginx.pid", workdir / "error.log"
    t = workdir / "tmp"
    conf = workdir / "nginx.conf"
    conf.write_text(f"""\
worker_processes 1;
pid {pidfile};
error_log {error_log} notice;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    include {upstreams}/*.conf;
{block}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://web;
            proxy_next_upstream off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""")
    check = subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise GrayliftError(f"nginx rejected {conf}:\n{check.stderr}")
    subprocess.run(["nginx", "-c", str(conf), "-g", "daemon on;"], check=True, capture_output=True)
    nginx = Nginx(workdir, conf, port, upstreams, pidfile, error_log, include, layout)
    try:
        services.wait_for_port("127.0.0.1", port, 10, log=error_log)
    except BaseException:
        stop_nginx(nginx)
        raise
    return nginx


def stop_nginx(nginx: Nginx) -> None:
    """TERM the master (fast shutdown), wait for it, KILL if needed; idempotent."""
    try:
        pid = nginx.master_pid()
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def get(port: int, path: str = "/") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def hits(port: int, n: int = 30) -> Counter[str]:
    """Which backend served each of ``n`` requests (502 counts as 'error')."""
    counts: Counter[str] = Counter()
    for _ in range(n):
        status, body = get(port)
        counts[body if status == 200 else f"error {status}"] += 1
    return counts
