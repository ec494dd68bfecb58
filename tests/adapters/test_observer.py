"""The traffic observer against a real listening socket and real clients on distinct loopback addresses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from graylift.adapters.observer import connections_from, parse_ss, verify_no_new_traffic
from graylift.adapters.transport.local import LocalTransport
from graylift.core.model import Host
from graylift.errors import TrafficError

APP_HOST = Host(name="app1", address="127.0.0.1")


class Server:
    """Accepts connections and reads (and discards) whatever clients send."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._read, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        with conn:
            while not self.stop.is_set():
                try:
                    if not conn.recv(4096):
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def _connect(source: str, port: int) -> socket.socket:
    client = socket.socket()
    client.bind((source, 0))
    client.connect(("127.0.0.1", port))
    return client


def _keep_sending(source: str, port: int, stop: threading.Event, *,
                  new_connections: bool) -> threading.Thread:
    def run() -> None:
        held = None if new_connections else _connect(source, port)
        while not stop.is_set():
            if held is None:
                with _connect(source, port) as one:
                    one.sendall(b"GET / HTTP/1.0\r\n\r\n")
            else:
                held.sendall(b"ping\n")
            time.sleep(0.05)
        if held is not None:
            held.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_connections_from_counts_established_by_peer(server: Server) -> None:
    clients = [_connect("127.0.0.2", server.port), _connect("127.0.0.2", server.port),
               _connect("127.0.0.3", server.port)]
    try:
        time.sleep(0.1)
        counts = await connections_from(LocalTransport(APP_HOST), server.port)
        assert counts == {"127.0.0.2": 2, "127.0.0.3": 1}
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("new_connections", [False, True], ids=["keepalive-requests", "new-connections"])
async def test_sender_is_named_idle_keepalive_is_not(server: Server, new_connections: bool) -> None:
    idle = _connect("127.0.0.4", server.port)  # a drained LB's idle kept-alive connection
    idle.sendall(b"old request\n")
    stop = threading.Event()
    sender = _keep_sending("127.0.0.5", server.port, stop, new_connections=new_connections)
    try:
        time.sleep(0.2)
        with pytest.raises(TrafficError, match=r"still receives traffic.*127\.0\.0\.5") as info:
            await verify_no_new_traffic(LocalTransport(APP_HOST), server.port, window=1.0)
        assert "127.0.0.4" not in str(info.value)
        kind = "new connections" if new_connections else "requests on open connections"
        assert kind in str(info.value)
        # the same sender, listed as allowed (e.g. the health checker), passes
        await verify_no_new_traffic(LocalTransport(APP_HOST), server.port, window=0.5, allowed={"127.0.0.5"})
    finally:
        stop.set()
        sender.join(timeout=5)
        idle.close()


async def test_quiet_host_passes(server: Server) -> None:
    idle = _connect("127.0.0.4", server.port)
    try:
        time.sleep(0.1)
        await verify_no_new_traffic(LocalTransport(APP_HOST), server.port, window=0.5)
    finally:
        idle.close()


def test_parse_ss_ipv6_mapped_and_time_wait() -> None:
    out = ("ESTAB 0 0 [::ffff:10.213.0.5]:8080 [::ffff:10.213.0.254]:51000\n"
           "\t cubic wscale:7,7 bytes_received:120 segs_in:4\n"
           "TIME-WAIT 0 0 10.213.0.5:8080 10.213.0.253:40000\n"
           "LISTEN 0 128 0.0.0.0:8080 0.0.0.0:*\n")
    conns = parse_ss(out)
    assert [(c.state, c.peer, c.bytes_received) for c in conns] == [
        ("ESTAB", "10.213.0.254", 120), ("TIME-WAIT", "10.213.0.253", None)]
