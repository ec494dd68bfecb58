"""pyapp: the lab's sample web app. GET / -> "pyapp <version> <hostname>", GET /health -> "ok <version>".

SIGTERM is a graceful shutdown: stop accepting, close idle keep-alive connections, let in-flight
requests finish (up to 30 s), then exit. GET /slow?seconds=N answers after N seconds (for drain tests).

GET /work answers after about 10 ms (the canary analysis's load). GET /metrics is Prometheus's text format:
``pyapp_requests_total{code}`` and the ``pyapp_request_seconds`` histogram, counting every request but
/health and /metrics. A version's ``pyapp.json`` may inject faults: ``error_rate`` (that share of requests
answered 500) and ``slowdown`` (every request that much slower).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import ParseResult, parse_qs, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "pyapp.json")) as f:
    META = json.load(f)
VERSION = META["version"]
HEALTHY = META.get("healthy", True)
ERROR_RATE = float(META.get("error_rate", 0.0))
SLOWDOWN = float(META.get("slowdown", 1.0))
WORK_SECONDS = 0.010
BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.012, 0.014, 0.016, 0.018, 0.020, 0.025, 0.030, 0.040, 0.050,
           0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HOSTNAME = socket.gethostname()
PORT = int(os.environ.get("PYAPP_PORT", "8080"))


class Metrics:
    """Request counts by status code and a latency histogram, in Prometheus's text format."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes = {"200": 0, "404": 0, "500": 0}  # present from the start: no requests is 0, not no data
        self.buckets = [0] * len(BUCKETS)
        self.count, self.total = 0, 0.0

    def observe(self, code: int, seconds: float) -> None:
        with self.lock:
            self.codes[str(code)] = self.codes.get(str(code), 0) + 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
            self.count += 1
            self.total += seconds

    def text(self) -> str:
        with self.lock:
            lines = ["# TYPE pyapp_requests_total counter"]
            lines += [f'pyapp_requests_total{{code="{c}"}} {n}' for c, n in sorted(self.codes.items())]
            lines.append("# TYPE pyapp_request_seconds histogram")
            pairs = zip(BUCKETS, self.buckets, strict=True)
            lines += [f'pyapp_request_seconds_bucket{{le="{b:g}"}} {n}' for b, n in pairs]
            lines += [f'pyapp_request_seconds_bucket{{le="+Inf"}} {self.count}',
                      f"pyapp_request_seconds_count {self.count}", f"pyapp_request_seconds_sum {self.total:.6f}"]
        return "\n".join(lines) + "\n"


METRICS = Metrics()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog is 5: a burst of new connections (an LB opening its pool to a host just
    # put back) overflowed it, the SYNs were dropped, and a 1 s + 2 s retransmit outlived HAProxy's connect
    # timeout. 128 is what real servers use (Tomcat's acceptCount is 100).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.lock = threading.Lock()
        self.idle: set[socket.socket] = set()
        self.busy = 0
        self.stopping = False

    def mark_idle(self, conn: socket.socket) -> bool:
        with self.lock:
            if self.stopping:
                return False
            self.idle.add(conn)
            return True

    def mark_busy(self, conn: socket.socket) -> None:
        with self.lock:
            self.idle.discard(conn)
            self.busy += 1

    def mark_done(self) -> None:
        with self.lock:
            self.busy -= 1

    def forget(self, conn: socket.socket) -> None:
        with self.lock:
            self.idle.discard(conn)

    def begin_stop(self) -> None:
        with self.lock:
            self.stopping = True
            idle, self.idle = list(self.idle), set()
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def in_flight(self) -> int:
        with self.lock:
            return self.busy


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120
    server: Server
    connection: socket.socket

    def handle(self) -> None:
        try:
            while True:
                if not self.server.mark_idle(self.connection):
                    break
                self.handle_one_request()
                if self.close_connection:
                    break
        finally:
            self.server.forget(self.connection)

    def parse_request(self) -> bool:
        self.server.mark_busy(self.connection)
        self._counted = True
        return super().parse_request()

    def handle_one_request(self) -> None:
        self._counted = False
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True
        finally:
            if self._counted:
                self.server.mark_done()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/metrics":
            self.reply(200, METRICS.text())
            return
        if url.path == "/health":
            self.answer(url)
            return
        began = time.monotonic()
        code = self.answer(url)
        METRICS.observe(code, time.monotonic() - began)

    def answer(self, url: ParseResult) -> int:
        if url.path != "/health" and ERROR_RATE and random.random() < ERROR_RATE:
            return self.reply(500, f"injected error {VERSION}\n")
        if url.path == "/work":
            time.sleep(WORK_SECONDS * random.uniform(0.8, 1.2) * SLOWDOWN)
            return self.reply(200, f"pyapp {VERSION} {HOSTNAME} worked\n")
        if url.path == "/health":
            if HEALTHY:
                return self.reply(200, f"ok {VERSION}\n")
            return self.reply(500, f"broken {VERSION}\n")
        if url.path == "/slow":
            seconds = float(parse_qs(url.query).get("seconds", ["1"])[0])
            time.sleep(min(seconds, 60))
            return self.reply(200, f"pyapp {VERSION} {HOSTNAME} slept {seconds:g}\n")
        if url.path == "/":
            return self.reply(200, f"pyapp {VERSION} {HOSTNAME}\n")
        return self.reply(404, "not found\n")

    def reply(self, status: int, text: str) -> int:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.server.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        return status

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = Server(("0.0.0.0", PORT))

    def on_term(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"pyapp-server {VERSION} listening on :{PORT}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.socket.close()
    server.begin_stop()
    deadline = time.monotonic() + 30
    while server.in_flight() and time.monotonic() < deadline:
        time.sleep(0.02)
    print(f"pyapp-server {VERSION} stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
