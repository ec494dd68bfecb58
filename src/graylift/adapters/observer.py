"""Watch, on the app host itself, who still sends it traffic after take-out (``ss`` from iproute2).

This catches a load balancer that graylift's config does not know about (e.g. a second nginx left out):
the host keeps receiving new connections or bytes from that LB's address, and the error names it.
An idle kept-alive connection from a drained LB is not traffic; a new connection, or a connection whose
``bytes_received`` grows, is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass

from graylift.errors import TrafficError, TransportError
from graylift.ports import Transport

SS_TIMEOUT = 15.0
SAMPLE_INTERVAL = 0.1


@dataclass(frozen=True)
class Connection:
    state: str
    local: str
    peer: str  # the peer's address (no port)
    peer_port: str
    bytes_received: int | None  # None for sockets without tcp_info (e.g. TIME-WAIT)


def peer_address(endpoint: str) -> tuple[str, str]:
    """``[::ffff:10.0.0.1]:443`` / ``10.0.0.1:443`` -> (``10.0.0.1``, ``443``)."""
    address, _, port = endpoint.rpartition(":")
    address = address.strip("[]")
    address = address.split("%", 1)[0]
    if address.startswith("::ffff:"):
        address = address[len("::ffff:"):]
    return address, port


def parse_ss(output: str) -> list[Connection]:
    """Parse ``ss -Htani`` output: one socket line (state first), then an indented tcp_info line."""
    found: list[Connection] = []
    pending: list[str] | None = None

    def flush(info: str) -> None:
        assert pending is not None
        state, _, _, local, peer = pending[:5]
        received: int | None = None
        for token in info.split():
            if token.startswith("bytes_received:"):
                received = int(token.split(":", 1)[1])
        if received is None and state == "ESTAB":
            received = 0  # the kernel omits bytes_received while it is 0
        address, port = peer_address(peer)
        found.append(Connection(state, local, address, port, received))

    for line in output.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            if pending is not None:
                flush(line)
                pending = None
            continue
        if pending is not None:
            flush("")
        fields = line.split()
        pending = fields if len(fields) >= 5 and fields[0] != "LISTEN" else None
    if pending is not None:
        flush("")
    return found


async def _sockets(transport: Transport, port: int) -> list[Connection]:
    command = f"ss -Htani '( sport = :{int(port)} )'"
    try:
        result = await transport.run(command, timeout=SS_TIMEOUT)
    except TransportError as exc:
        raise TrafficError(f"{transport.host.name}: cannot list connections to port {port} with ss "
                           f"(is iproute2 installed?): {exc}") from exc
    return parse_ss(result.stdout)


async def connections_from(transport: Transport, port: int) -> dict[str, int]:
    """Established TCP connections to ``port`` on the host, counted by peer address."""
    counts: dict[str, int] = {}
    for conn in await _sockets(transport, port):
        if conn.state == "ESTAB":
            counts[conn.peer] = counts.get(conn.peer, 0) + 1
    return counts


async def verify_no_new_traffic(transport: Transport, port: int, *, window: float,
                                allowed: Collection[str] = frozenset()) -> None:
    """Raise TrafficError naming every peer (not in ``allowed``) that opened a connection or sent bytes
    to ``port`` during ``window`` seconds.

    Samples every 0.1 s (each sample is one ``ss`` run): a new socket key (peer address:port) seen in any
    sample, established or already in TIME-WAIT, or closed meanwhile (``ss -E`` destroy events), is a new
    connection; a socket known at the start whose ``bytes_received`` grew carried a request. Idle
    kept-alive connections (even ones closed during the window) are not traffic.
    """
    # Connections that open and close between two samples are caught by ss's socket-destroy events
    # (-E, needs CAP_NET_ADMIN: root on the host; best effort otherwise).
    events = asyncio.create_task(transport.run(
        f"timeout {window + 0.3:.1f} stdbuf -oL ss -EHtn '( sport = :{int(port)} )' 2>/dev/null; true",
        timeout=window + SS_TIMEOUT, check=False))
    try:
        baseline = {(c.local, c.peer, c.peer_port): c.bytes_received for c in await _sockets(transport, port)}
        offenders: dict[str, set[str]] = {}

        def new_connection(conn: Connection) -> None:
            if conn.peer not in allowed and (conn.local, conn.peer, conn.peer_port) not in baseline:
                offenders.setdefault(conn.peer, set()).add("new connections")

        deadline = time.monotonic() + window
        while True:
            await asyncio.sleep(min(SAMPLE_INTERVAL, max(0.0, deadline - time.monotonic())))
            for conn in await _sockets(transport, port):
                new_connection(conn)
                before = baseline.get((conn.local, conn.peer, conn.peer_port))
                if (conn.peer not in allowed and before is not None and conn.bytes_received is not None
                        and conn.bytes_received > before):
                    offenders.setdefault(conn.peer, set()).add("requests on open connections")
            if time.monotonic() >= deadline:
                break
        closed = await events
    except BaseException:
        events.cancel()
        raise
    for conn in parse_ss(closed.stdout):
        new_connection(conn)
    if offenders:
        named = "; ".join(f"{peer} ({', '.join(sorted(kinds))})" for peer, kinds in sorted(offenders.items()))
        raise TrafficError(f"{transport.host.name} still receives traffic on port {port} {window:g}s after "
                           f"take-out from: {named}. Is that a load balancer or client graylift's traffic "
                           "config does not know about? Add it (or list it as allowed) before releasing.")
