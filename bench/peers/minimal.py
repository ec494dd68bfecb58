"""The minimal driver: the same release with nothing but asyncssh and the HAProxy socket, to measure the waits
no tool can avoid.

Per batch, for each host at once: one SSH session runs one script that stages, prints ``staged`` and waits
for a line on stdin; the controller drains the host in HAProxy (``set server ... state drain``, then waits
for scur 0 in the ``show stat`` that one shared poller reads every 20 ms) and sends ``go``; the script
stops, switches, starts and polls /health every 50 ms, and prints the host-side timestamps
``times <stop0> <stop1> <start0> <healthy>`` (``date +%s.%N``: the hosts are network namespaces on the
controller's kernel, one clock). Then the controller sets the server ready and waits for HAProxy to report it UP.

Per host: drain = controller-side seconds from the drain command to scur 0; stop = stop1 - stop0;
start_to_healthy = healthy - start0. The physical limit (``common.physical_limit``) is the sum over batches
of the max over the batch's hosts of drain + stop + start_to_healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import shlex
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

# cryptography 51 warns at asyncssh's import of its DSA names (as graylift's transport module also silences)
warnings.filterwarnings("ignore", message="DSA is deprecated", category=UserWarning, module=r"asyncssh\.")
import asyncssh  # noqa: E402
from peers import common  # noqa: E402

FINE_POLL = 0.02  # drain poll (controller) and the readiness poll: fine, so the limit stays tight
HEALTH_POLL = 0.05  # /health poll on the host
SOCKET_SLOTS = 4  # HAProxy runtime API connections at once (as graylift's adapter)


class Haproxy:
    """The runtime socket for the whole driver: at most SOCKET_SLOTS connections at once (the stats socket
    takes few: ``stats maxconn``), and one poller reading ``show stat`` every FINE_POLL for all waiting hosts."""

    def __init__(self, sock: str, backend: str) -> None:
        self.sock, self.backend = sock, backend
        self.slots = asyncio.Semaphore(SOCKET_SLOTS)
        self.rows: dict[str, dict[str, str]] = {}
        self.polls_started = self.rows_from = 0
        self.fresh = asyncio.Condition()

    async def command(self, line: str) -> str:
        async with self.slots:
            for attempt in range(1, 6):
                try:
                    reader, writer = await asyncio.open_unix_connection(self.sock)
                    try:
                        writer.write(line.encode() + b"\n")
                        await writer.drain()
                        return (await reader.read()).decode("utf-8", "replace")
                    finally:
                        writer.close()
                except (ConnectionRefusedError, ConnectionResetError):
                    if attempt == 5:
                        raise
                    await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    async def set(self, server: str, state: str) -> None:
        answer = (await self.command(f"set server {self.backend}/{server} state {state}")).strip()
        if answer:
            raise RuntimeError(f"set server {self.backend}/{server} state {state}: {answer}")

    async def poll(self) -> None:
        while True:
            self.polls_started += 1
            started = self.polls_started
            answer = await self.command("show stat")
            rows = {r["svname"]: r for r in csv.DictReader(io.StringIO(answer.lstrip("# ")))
                    if r.get("pxname") == self.backend}
            async with self.fresh:
                self.rows, self.rows_from = rows, started
                self.fresh.notify_all()
            await asyncio.sleep(FINE_POLL)

    async def wait_for(self, server: str, field: str, good: Callable[[str], bool], timeout: float) -> bool:
        """Wait until a ``show stat`` begun after this call shows ``good(field)``; False after ``timeout``."""
        needed = self.polls_started + 1
        deadline = time.monotonic() + timeout
        async with self.fresh:
            while self.rows_from < needed or not good(self.rows.get(server, {}).get(field) or ""):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.fresh.wait(), remaining)
        return True


def host_script(spec: Mapping[str, Any]) -> str:
    steps = common.step_scripts(spec)
    health = common.health_script(str(spec["app"]), int(spec["port"]), HEALTH_POLL)
    return "\n".join([
        "set -e", f"( {steps['stage']} ) >/dev/null", "echo staged", "read go",
        "stop0=$(date +%s.%N)", f"{steps['stop']} >/dev/null", "stop1=$(date +%s.%N)", steps["switch"],
        "start0=$(date +%s.%N)", f"{steps['start']} >/dev/null", health, "healthy=$(date +%s.%N)",
        'echo "times $stop0 $stop1 $start0 $healthy"'])


async def _host(conn: asyncssh.SSHClientConnection, name: str, spec: Mapping[str, Any],
                haproxy: Haproxy) -> common.HostWaits:
    async with conn.create_process("sh -c " + shlex.quote(host_script(spec))) as proc:
        line = await proc.stdout.readline()
        if line.strip() != "staged":
            raise RuntimeError(f"{name}: staging failed: {line.strip()} {await proc.stderr.read()}")
        started = time.monotonic()
        await haproxy.set(name, "drain")
        await haproxy.wait_for(name, "scur", lambda v: int(v or 0) == 0, common.DRAIN_TIMEOUT)
        drained = time.monotonic() - started
        proc.stdin.write("go\n")
        line = await proc.stdout.readline()
        result = await proc.wait()
        if result.exit_status != 0:
            raise RuntimeError(f"{name}: exit {result.exit_status}: {line.strip()} {result.stderr}")
    stop, start_to_healthy = common.parse_host_times(line)
    await haproxy.set(name, "ready")
    if not await haproxy.wait_for(name, "status", lambda v: v == "UP", common.UP_TIMEOUT):
        raise RuntimeError(f"{name}: not UP in HAProxy {common.UP_TIMEOUT:g}s after ready")
    return common.HostWaits(round(drained, 6), stop, start_to_healthy)


async def release(spec: Mapping[str, Any]) -> dict[str, common.HostWaits]:
    """Release ``spec`` batch by batch; return every host's inherent waits."""
    addresses: dict[str, str] = spec["addresses"]

    async def connect(name: str) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(addresses[name], username="root", client_keys=[spec["key"]],
                                      known_hosts=spec["known_hosts"], connect_timeout=common.CONNECT_TIMEOUT)

    names = [h for batch in spec["batches"] for h in batch]
    conns = dict(zip(names, await asyncio.gather(*(connect(n) for n in names)), strict=True))
    waits: dict[str, common.HostWaits] = {}
    haproxy = Haproxy(str(spec["socket"]), str(spec["app"]))
    poller = asyncio.create_task(haproxy.poll())
    try:
        for batch in spec["batches"]:
            done = await asyncio.gather(*(_host(conns[h], h, spec, haproxy) for h in batch))
            waits.update(zip(batch, done, strict=True))
    finally:
        poller.cancel()
        for conn in conns.values():
            conn.close()
    return waits
