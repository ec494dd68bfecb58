"""A threaded HTTP server on 127.0.0.1 that hands every request to a fake's ``handle`` method: the one base of
every fake HTTP server of the tests (``requests`` keeps what each one was asked)."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]  # names in lower case
    body: bytes
    params: dict[str, list[str]] = field(default_factory=dict)  # every value of each parameter, blanks kept
    peer: int = 0  # the client's port: one per TCP connection

    def form(self) -> dict[str, str]:
        """Query parameters merged with an x-www-form-urlencoded body (body wins)."""
        merged = dict(self.query)
        if self.body and "json" not in self.headers.get("content-type", ""):
            merged.update({k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()})
        return merged

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: Any = ""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str) and self.content_type != "application/json":
            return self.body.encode()
        return json.dumps(self.body).encode()


class _QuietServer(ThreadingHTTPServer):
    """A client that hung up (a timeout test, a closed client) is not an error of the fake: socketserver would
    print its traceback to whatever sys.stderr is at that moment, another test's captured output included."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class FakeServer:
    """Base class: subclasses implement ``handle``; ``requests`` keeps every request seen (for asserts)."""

    requests: list[Request] = field(default_factory=list)

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _any(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()},
                                  {k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(length) if length else b"",
                                  parse_qs(url.query, keep_blank_values=True), self.client_address[1])
                with fake._lock:
                    fake.requests.append(request)
                    try:
                        response = fake.handle(request)
                    except Exception as exc:  # a fake bug must show as a 500, not hang the client
                        response = Response(500, f"fake error: {exc!r}", "text/plain")
                data = response.encode()
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _any

            def log_message(self, *args: object) -> None:
                pass

        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
