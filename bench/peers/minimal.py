"""The minimal driver: the same release with nothing but asyncssh and the HAProxy socket, to measure the waits
no tool can avoid.

Per batch, for each host at once: one SSH session runs one script that stages, prints ``staged`` and waits
for a line on stdin; the controller drains the host in HAProxy (``set server ... state drain``, then
``show stat`` every 20 ms until scur is 0) and sends ``go``; the script stops, switches, starts and polls
/health every 50 ms, and prints the host-side timestamps ``times <stop0> <stop1> <start0> <healthy>``
(``date +%s.%N``: the hosts are network namespaces on the controller's kernel, one clock). Then the
controller sets the server ready and waits for HAProxy to report it UP.

Per host: drain = controller-side seconds from the drain command to scur 0; stop = stop1 - stop0;
start_to_healthy = healthy - start0. The physical limit (``common.physical_limit``) is the sum over batches
of the max over the batch's hosts of drain + stop + start_to_healthy.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Mapping
from typing import Any

import asyncssh
from peers import common

FINE_POLL = 0.02  # drain poll (controller) and the readiness poll: fine, so the limit stays tight
HEALTH_POLL = 0.05  # /health poll on the host


async def _haproxy(sock: str, line: str) -> str:
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        return (await reader.read()).decode("utf-8", "replace")
    finally:
        writer.close()


async def _set(sock: str, backend: str, server: str, state: str) -> None:
    answer = (await _haproxy(sock, f"set server {backend}/{server} state {state}")).strip()
    if answer:
        raise RuntimeError(f"set server {backend}/{server} state {state}: {answer}")


async def _field(sock: str, backend: str, server: str, name: str) -> str:
    return common.stat_row(await _haproxy(sock, "show stat"), backend, server).get(name) or ""


def host_script(spec: Mapping[str, Any]) -> str:
    steps = common.step_scripts(spec)
    health = common.health_script(str(spec["app"]), int(spec["port"]), HEALTH_POLL)
    return "\n".join([
        "set -e", f"( {steps['stage']} ) >/dev/null", "echo staged", "read go",
        "stop0=$(date +%s.%N)", f"{steps['stop']} >/dev/null", "stop1=$(date +%s.%N)", steps["switch"],
        "start0=$(date +%s.%N)", f"{steps['start']} >/dev/null", health, "healthy=$(date +%s.%N)",
        'echo "times $stop0 $stop1 $start0 $healthy"'])


async def _host(conn: asyncssh.SSHClientConnection, name: str, spec: Mapping[str, Any]) -> common.HostWaits:
    sock, backend = str(spec["socket"]), str(spec["app"])
    async with conn.create_process("sh -c " + shlex.quote(host_script(spec))) as proc:
        line = await proc.stdout.readline()
        if line.strip() != "staged":
            raise RuntimeError(f"{name}: staging failed: {line.strip()} {await proc.stderr.read()}")
        started = time.monotonic()
        await _set(sock, backend, name, "drain")
        while int(await _field(sock, backend, name, "scur") or 0) > 0 and time.monotonic() - started < 10:
            await asyncio.sleep(FINE_POLL)
        drained = time.monotonic() - started
        proc.stdin.write("go\n")
        line = await proc.stdout.readline()
        result = await proc.wait()
        if result.exit_status != 0:
            raise RuntimeError(f"{name}: exit {result.exit_status}: {line.strip()} {result.stderr}")
    stop, start_to_healthy = common.parse_host_times(line)
    await _set(sock, backend, name, "ready")
    deadline = time.monotonic() + common.UP_TIMEOUT
    while await _field(sock, backend, name, "status") != "UP":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: not UP in HAProxy {common.UP_TIMEOUT:g}s after ready")
        await asyncio.sleep(FINE_POLL)
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
    try:
        for batch in spec["batches"]:
            done = await asyncio.gather(*(_host(conns[h], h, spec) for h in batch))
            waits.update(zip(batch, done, strict=True))
    finally:
        for conn in conns.values():
            conn.close()
    return waits
