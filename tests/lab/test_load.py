"""The load generator against a real local HTTP server (no root needed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from graylift.lab.load import BackgroundLoad, LoadGenerator


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        status = 503 if self.path == "/down" else 200
        body = b"hello\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_counts_2xx_at_the_capped_rate(server: str) -> None:
    load = BackgroundLoad(server + "/", connections=4, rate=200).start()
    threading.Event().wait(1.0)
    report = load.stop()
    assert report.errors == 0 and report.non_2xx == 0
    assert 120 <= report.ok_2xx <= 260, report
    assert report.per_status == {200: report.ok_2xx}


def test_counts_non_2xx_apart(server: str) -> None:
    with BackgroundLoad(server + "/down", connections=2, rate=100) as load:
        threading.Event().wait(0.5)
        report = load.stop()
    assert report.ok_2xx == 0 and report.non_2xx > 0 and set(report.per_status) == {503}


def test_connection_refused_counts_as_errors_and_goes_on() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    load = BackgroundLoad(f"http://127.0.0.1:{port}/", connections=2, rate=50).start()
    threading.Event().wait(0.5)
    report = load.stop()
    assert report.errors > 0 and report.ok_2xx == 0
    assert report.error_kinds.get("connect", 0) == report.errors


def test_rejects_non_http_urls() -> None:
    with pytest.raises(ValueError):
        LoadGenerator("https://127.0.0.1/")
