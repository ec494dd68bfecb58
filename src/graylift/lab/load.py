"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams, to judge a release through the LB.

Each connection sends one GET at a time and reads the whole response (Content-Length or chunked).
A connect, write or read failure counts as an error; the connection is opened again and the load goes on.
The total rate is capped (default 400 req/s) so the generator never busy-loops the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_RATE = 400.0
REQUEST_TIMEOUT = 10.0
RECONNECT_DELAY = 0.05


@dataclass
class LoadReport:
    sent: int = 0
    ok_2xx: int = 0
    non_2xx: int = 0
    errors: int = 0
    per_status: dict[int, int] = field(default_factory=dict)
    duration: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)  # e.g. {"connect": 3, "read": 1}

    @property
    def rate(self) -> float:
        return self.sent / self.duration if self.duration else 0.0


class _ResponseError(Exception):
    pass


class LoadGenerator:
    """``rate`` is requests per second for all connections together; None = 400, 0 or less = no cap."""

    def __init__(self, url: str, *, connections: int = 8, rate: float | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"load generator needs an http:// URL, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                        "User-Agent: graylift-lab-load\r\n\r\n").encode()
        self.connections = max(1, connections)
        self.rate = DEFAULT_RATE if rate is None else rate
        self._statuses: Counter[int] = Counter()
        self._errors: Counter[str] = Counter()
        self._sent = 0

    async def run_until(self, stop: asyncio.Event) -> LoadReport:
        started = time.monotonic()
        workers = [asyncio.create_task(self._worker(stop, n)) for n in range(self.connections)]
        await stop.wait()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        return self._report(time.monotonic() - started)

    def _report(self, duration: float) -> LoadReport:
        ok = sum(n for status, n in self._statuses.items() if 200 <= status < 300)
        return LoadReport(sent=self._sent, ok_2xx=ok, non_2xx=sum(self._statuses.values()) - ok,
                          errors=sum(self._errors.values()), per_status=dict(sorted(self._statuses.items())),
                          duration=duration, error_kinds=dict(self._errors))

    async def _worker(self, stop: asyncio.Event, number: int) -> None:
        interval = self.connections / self.rate if self.rate > 0 else 0.0
        next_send = time.monotonic() + interval * number / self.connections
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while not stop.is_set():
                if interval:
                    next_send = max(next_send + interval, time.monotonic() - 1.0)
                    delay = next_send - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if conn is None:
                    try:
                        conn = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                      REQUEST_TIMEOUT)
                    except (OSError, TimeoutError):
                        self._errors["connect"] += 1
                        await asyncio.sleep(RECONNECT_DELAY)
                        continue
                reader, writer = conn
                self._sent += 1
                try:
                    writer.write(self.request)
                    await writer.drain()
                    status, keep_alive = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, _ResponseError, ValueError):
                    self._errors["read"] += 1
                    _close(writer)
                    conn = None
                    await asyncio.sleep(RECONNECT_DELAY)
                    continue
                self._statuses[status] += 1
                if not keep_alive:
                    _close(writer)
                    conn = None
                if not interval:
                    await asyncio.sleep(0)
        finally:
            if conn is not None:
                _close(conn[1])


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return (status, whether the connection stays open)."""
    status_line = await reader.readline()
    if not status_line:
        raise _ResponseError("connection closed before a response")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise _ResponseError(f"bad status line {status_line!r}")
    status = int(parts[1])
    keep_alive = parts[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    while True:
        line = await reader.readline()
        if not line:
            raise _ResponseError("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection":
            keep_alive = "close" not in value if keep_alive else "keep-alive" in value
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    elif status not in (204, 304) and not 100 <= status < 200:
        await reader.read()  # body until close
        keep_alive = False
    return status, keep_alive


class BackgroundLoad:
    """Runs a LoadGenerator in its own thread and event loop: ``start()``, then ``stop()`` -> LoadReport."""

    def __init__(self, url: str, *, connections: int = 8, rate: float | None = None) -> None:
        self.generator = LoadGenerator(url, connections=connections, rate=rate)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._report: LoadReport | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="graylift-lab-load", daemon=True)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        self._report = await self.generator.run_until(self._stop)

    def start(self) -> BackgroundLoad:
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self) -> LoadReport:
        if self._loop is None or self._stop is None:
            raise RuntimeError("the load was not started")
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        assert self._report is not None
        return self._report

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()


class WrkLoad:
    """Drives `wrk` (C, far faster than the Python generator) in back-to-back chunks until ``stop()``.

    wrk prints its counts only when a run ends, so it runs in chunks of ``chunk`` seconds; the sums are
    returned in the same LoadReport shape. ``close=True`` sends ``Connection: close`` (a new connection
    per request), which keeps an nginx reload's closing of idle keep-alive connections out of the count.
    """

    def __init__(self, url: str, *, connections: int = 16, threads: int = 1, chunk: float = 3.0,
                 close: bool = False) -> None:
        self.argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{chunk:g}s", "--timeout", "10s"]
        if close:
            self.argv += ["-H", "Connection: close"]
        self.argv.append(url)
        self.report = LoadReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="graylift-lab-wrk", daemon=True)

    def _main(self) -> None:
        import subprocess

        started = time.monotonic()
        while not self._stop.is_set():
            out = subprocess.run(self.argv, capture_output=True, text=True, check=False).stdout
            add_wrk_output(self.report, out)
        self.report.duration = time.monotonic() - started

    def start(self) -> WrkLoad:
        self._thread.start()
        return self

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join()
        return self.report


def add_wrk_output(report: LoadReport, text: str) -> None:
    """Add one wrk run's summary to ``report``: requests, non-2xx/3xx, socket errors by kind."""
    import re

    sent = re.search(r"(\d+) requests in", text)
    if not sent:
        report.errors += 1
        report.error_kinds["wrk"] = report.error_kinds.get("wrk", 0) + 1
        return
    total = int(sent.group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non_2xx = int(bad.group(1)) if bad else 0
    report.sent += total
    report.non_2xx += non_2xx
    report.ok_2xx += total - non_2xx
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        for kind, value in zip(("connect", "read", "write", "timeout"), sock.groups(), strict=True):
            if int(value):
                report.errors += int(value)
                report.error_kinds[kind] = report.error_kinds.get(kind, 0) + int(value)
