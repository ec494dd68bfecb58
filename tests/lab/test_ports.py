"""Ports for the services the lab and the test fixtures start: never the same one twice from one process."""

from __future__ import annotations

import socket
import threading

from graylift.lab import services


def test_a_process_never_gets_the_same_free_port_twice() -> None:
    """The kernel may give a closed port to the next bind again: 400 ports in a row held a repeat in 10 of 10
    tries before; two frontends of a test HAProxy were once given the same port and shared each other's
    requests (CI, tests/adapters/traffic/test_haproxy.py)."""
    got: list[int] = []

    def take(n: int) -> None:
        for _ in range(n):
            got.append(services.free_port())

    takers = [threading.Thread(target=take, args=(100,)) for _ in range(4)]
    for t in takers:
        t.start()
    for t in takers:
        t.join()
    assert len(got) == 400 and len(set(got)) == 400
    for port in got[:20]:  # each is free: it binds
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
