"""pyapp: the lab's sample web app. GET / -> "pyapp <version> <hostname>", GET /health -> "ok <version>".

SIGTERM is a graceful shutdown: stop accepting, close idle keep-alive connections, let in-flight
requests finish (up to 30 s), then exit. GET /slow?seconds=N answers after N seconds (for drain tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "pyapp.json")) as f:
    META = json.load(f)
VERSION = META["version"]
HEALTHY = META.get("healthy", True)
HOSTNAME = socket.gethostname()
PORT = int(os.environ.get("PYAPP_PORT", "8080"))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

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
        if url.path == "/health":
            if HEALTHY:
                self.reply(200, f"ok {VERSION}\n")
            else:
                self.reply(500, f"broken {VERSION}\n")
        elif url.path == "/slow":
            seconds = float(parse_qs(url.query).get("seconds", ["1"])[0])
            time.sleep(min(seconds, 60))
            self.reply(200, f"pyapp {VERSION} {HOSTNAME} slept {seconds:g}\n")
        elif url.path == "/":
            self.reply(200, f"pyapp {VERSION} {HOSTNAME}\n")
        else:
            self.reply(404, "not found\n")

    def reply(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.server.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

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
