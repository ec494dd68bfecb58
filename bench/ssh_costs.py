#!/usr/bin/env python3
"""What an SSH connection costs the controller: a connect, a command on an open connection, a keepalive.

On a lab of N pyapp hosts (root; network namespaces, sshd), with asyncssh as graylift's transport uses it (keys
and known_hosts read once, host keys checked), this process's own CPU (user + system, RUSAGE_SELF) is read
around: ``--rounds`` connects (and closes) to every host at once; ``--rounds`` commands (``true``) on every host
over connections kept open; ``--idle`` seconds of every connection open and idle with keepalives every 15 s
(graylift's interval before keepalives were limited to connections in use), and the same without keepalives.
These are the figures behind the choice of when to keep a connection and when to send keepalives
(README, "1000 hosts"); they are costs, not a speed claim.

    sudo .venv/bin/python bench/ssh_costs.py                  # 50 hosts, 6 rounds, 61 s idle
    sudo .venv/bin/python bench/ssh_costs.py --hosts 100 --results /tmp/ssh_costs.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from graylift.adapters.transport._asyncssh import asyncssh  # without cryptography's DSA warnings on stderr
from graylift.lab import LabInfo, lab_down, lab_up

RESULTS = Path(__file__).with_name("results") / "ssh_costs.json"
KEEPALIVE_SECONDS = 15


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def cpu_of(work: Callable[[], Awaitable[object]]) -> float:
    before = cpu()
    await work()
    return cpu() - before


async def measure(info: LabInfo, rounds: int, idle: float) -> dict[str, float]:
    key = asyncssh.read_private_key(info.client_key)
    known = asyncssh.read_known_hosts(info.known_hosts)
    addresses = [h.address for h in info.hosts]
    n = len(addresses)

    async def connect_all(keepalive: float = 0) -> list[asyncssh.SSHClientConnection]:
        return list(await asyncio.gather(*(
            asyncssh.connect(a, username="root", client_keys=[key], known_hosts=known, config=[],
                             keepalive_interval=keepalive, keepalive_count_max=3) for a in addresses)))

    async def close_all(conns: list[asyncssh.SSHClientConnection]) -> None:
        for conn in conns:
            conn.close()
        await asyncio.gather(*(conn.wait_closed() for conn in conns))

    async def connects() -> None:
        for _ in range(rounds):
            await close_all(await connect_all())

    connect_s = await cpu_of(connects)
    conns = await connect_all()

    async def commands() -> None:
        for _ in range(rounds):
            await asyncio.gather(*(conn.run("true", check=True) for conn in conns))

    command_s = await cpu_of(commands)
    quiet_s = await cpu_of(lambda: asyncio.sleep(idle))
    await close_all(conns)
    conns = await connect_all(KEEPALIVE_SECONDS)
    keepalive_s = await cpu_of(lambda: asyncio.sleep(idle))
    await close_all(conns)
    keepalives = n * int(idle // KEEPALIVE_SECONDS)
    return {
        "connect_and_close_ms": round(1000 * connect_s / (n * rounds), 2),
        "command_on_open_connection_ms": round(1000 * command_s / (n * rounds), 2),
        "idle_without_keepalive_ms_per_connection_minute": round(1000 * quiet_s / n * 60 / idle, 3),
        "keepalive_ms": round(1000 * (keepalive_s - quiet_s) / keepalives, 3),
        "keepalives_sent": keepalives,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--idle", type=float, default=61.0, help="seconds idle (a few keepalive intervals)")
    parser.add_argument("--lab", default="sshcost")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    lab_down(args.lab)
    try:
        info = lab_up(args.lab, hosts=args.hosts, apps=("pyapp",))
        figures = asyncio.run(measure(info, args.rounds, args.idle))
    finally:
        lab_down(args.lab)
    result = {"bench": "ssh_costs", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {platform.python_version()}", "hosts": args.hosts,
              "rounds": args.rounds, "idle_seconds": args.idle, "cpu_per_unit": figures}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
