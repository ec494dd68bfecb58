#!/usr/bin/env python3
"""One release across a 1000-host lab: the controller's CPU per host and peak memory.

Runs on a real lab (root): N pyapp hosts (network namespaces, sshd, the Python app; HAProxy, nginx and
ZooKeeper in front, Alertmanager; the lab raises the machine's ARP table past 400 hosts and puts it back), a
first release installs 1.0.0, then the measured release takes every host to 2.0.0: canary 1, then batches of
``--batch`` hosts (10% of 1000 by default), each host drained, muted, restarted, health-checked, put back.
graylift runs as its own process (`graylift release --wait`), so its CPU (user + system) and peak RSS are read
with RUSAGE_CHILDREN. The reference measured in the same run: one SSH command (`true`) on every host at once over
asyncssh, the transport's own floor for touching each host once (its CPU per host and wall time).

    sudo .venv/bin/python bench/scale.py                     # 1000 hosts, batch 100
    sudo .venv/bin/python bench/scale.py --hosts 200 --batch 20
    sudo .venv/bin/python bench/scale.py --max-connections 1000 --results /tmp/scale.json

``--max-connections`` sets the config's ``ssh.max_connections`` (the lab writes 200: then the preflight's
connections to 1000 hosts are closed to make room, and each batch connects again). Figures go to
bench/results/scale.json, or ``--results`` (and are printed). Targets (issue 11): at most 20 ms of controller CPU
per host and at most 300 MB peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import yaml

from graylift.adapters.transport._asyncssh import asyncssh  # without cryptography's DSA warnings on stderr
from graylift.core.state import HostState
from graylift.lab import LabInfo
from graylift.service import Graylift

sys.path.insert(0, str(Path(__file__).parent))
from release_overhead import APP, ENV, lab_fleet  # a sibling script

RESULTS = Path(__file__).with_name("results") / "scale.json"


def children_usage() -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of every child process waited for so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def release(config: Path, version: str) -> dict[str, float | int]:
    """`graylift release --wait` as its own process: wall seconds, CPU seconds, exit code (peak RSS after)."""
    cpu0, _ = children_usage()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "graylift", "-c", str(config), "release", APP, version,
                           "--env", ENV, "--wait"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    cpu1, _ = children_usage()
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu1 - cpu0, 2), "exit": proc.returncode}


async def touch_every_host(info: LabInfo) -> float:
    """One `true` on every host at once over asyncssh (host keys checked): the wall seconds."""
    key = asyncssh.read_private_key(info.client_key)
    limit = asyncio.Semaphore(200)

    async def one(address: str) -> None:
        async with limit, asyncssh.connect(address, username="root", client_keys=[key],
                                           known_hosts=info.known_hosts) as conn:
            await conn.run("true", check=True)

    started = time.monotonic()
    await asyncio.gather(*(one(h.address) for h in info.hosts))
    return time.monotonic() - started


def reference(lab: str) -> dict[str, float]:
    """The transport floor, in a child process so its CPU is counted apart from this script's."""
    code = ("import asyncio, sys, json; sys.path.insert(0, sys.argv[1]); from scale import touch_every_host; "
            "from graylift.lab.info import LabInfo; "
            "print(asyncio.run(touch_every_host(LabInfo.load(sys.argv[2]))))")
    cpu0, _ = children_usage()
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), lab],
                          capture_output=True, text=True, check=True)
    cpu1, _ = children_usage()
    return {"wall_seconds": round(float(done.stdout.strip()), 2), "cpu_seconds": round(cpu1 - cpu0, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lab", default="scale")
    parser.add_argument("--max-connections", type=int, default=None,
                        help="ssh.max_connections in the config (default: the lab's)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    with lab_fleet(args.lab, args.hosts, args.batch) as (config, _, lab_seconds):
        data = yaml.safe_load(config.read_text())
        if args.max_connections is not None:
            data["ssh"]["max_connections"] = args.max_connections
            config.write_text(yaml.safe_dump(data, sort_keys=False))
        floor = reference(args.lab)
        install = release(config, "1.0.0")
        measured = release(config, "2.0.0")
        _, peak_mib = children_usage()  # the largest child: graylift (the reference is far smaller)
        gl = Graylift(config)
        rec = gl.store.list_releases(APP, ENV, limit=1)[0]
        runs = gl.store.host_runs(rec.id)
        on_new = sum(1 for r in runs if r.state is HostState.DONE)
        state, message = rec.state.value, rec.message
        states = dict(Counter(r.state.value for r in runs))
        failed = {r.host: r.error for r in runs if r.state.counts_as_failure or r.state is HostState.SKIPPED}
        gl.close()
        load = os.getloadavg()[0]
    n = args.hosts
    result = {
        "bench": "scale", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}", "hosts": n, "batch": args.batch,
        "ssh_max_connections": data["ssh"]["max_connections"],
        "lab_up_seconds": round(lab_seconds, 1),
        "release": measured | {"state": state, "hosts_on_new_version": on_new,
                               "cpu_ms_per_host": round(1000 * float(measured["cpu_seconds"]) / n, 1),
                               "message": message, "host_states": states,
                               "failed_hosts": dict(list(failed.items())[:10])},
        "load_average_1m_at_end": round(load, 1),
        "install_release": install,
        "controller_peak_rss_mib": round(peak_mib, 1),
        "reference_ssh_true_every_host": floor | {
            "cpu_ms_per_host": round(1000 * floor["cpu_seconds"] / n, 1)},
        "targets": {"cpu_ms_per_host": 20, "peak_rss_mib": 300},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if measured["exit"] == 0 and install["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
