#!/usr/bin/env python3
"""Staging a package on a whole fleet: graylift's fan-out pre-stage against one repository and against scp.

Runs on a real lab (root): N hosts (network namespaces with sshd), a package of random bytes in a tarball,
and the same work on every host three ways, each timed by wall clock in the same run:

(a) graylift's pre-stage phase (graylift.engine.prestage) of a real release, started through the service:
    the first host downloads from the lab's artifact repository, every staged host then serves the next
    ones (one-file HTTP server on its own address); each host verifies the sha256 and unpacks.
(b) every host downloads from the one repository at once (curl over SSH on all hosts concurrently), then
    verifies the sha256 and unpacks: graylift's own stage step without pre-staging.
(c) scp from the controller, 20 at a time (the Walle/Spug way: OpenSSH `scp` processes, then `ssh` to
    verify the sha256 and unpack).

Every machine's link is rate-limited the same way (``--link``, tc tbf): the controller's and the
repository's (both on the lab bridge's own address: egress of the bridge device) and each host's (egress
of its eth0): a real repository and controller have one NIC, as does each host. ``--tmpfs GiB`` puts the
lab's host directories on a tmpfs: the lab's hosts otherwise share this machine's one disk, which then
bounds all three ways (a real fleet has a disk per host).

    sudo .venv/bin/python bench/staging.py                          # 200 hosts, 100 MiB, 1gbit links
    sudo .venv/bin/python bench/staging.py --hosts 200 --mib 20 --tmpfs 12

Figures go to bench/results/staging.json (a list: one entry per run) and are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import json
import os
import platform
import pstats
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.adapters.transport.ssh import SshConfig, SshConnector
from graylift.core.model import Host
from graylift.core.state import ReleaseState
from graylift.lab import lab_down, lab_up
from graylift.lab.info import LabInfo
from graylift.service import Graylift

APP, ENV, VERSION = "pyapp", "prod", "9.0.0"
RESULTS = Path(__file__).with_name("results") / "staging.json"
SCP_PARALLEL = 20
q = shlex.quote


def build_package(artifacts: Path, mib: int) -> tuple[Path, str]:
    """pyapp 9.0.0: a tar.gz holding ``mib`` MiB of random bytes, with its .sha256 beside, in the lab repository."""
    where = artifacts / APP / VERSION
    where.mkdir(parents=True, exist_ok=True)
    payload, archive = where / "payload.bin", where / f"{APP}-{VERSION}.tar.gz"
    with payload.open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1 << 20))
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(payload, arcname="payload.bin")
    payload.unlink()
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    Path(f"{archive}.sha256").write_text(f"{digest}  {archive.name}\n")
    return archive, digest


def limit_links(info: LabInfo, rate: str) -> None:
    """One tbf per machine's egress: the bridge (controller + repository) and every host's eth0."""
    tbf = ["tbf", "rate", rate, "burst", "1mb", "latency", "100ms"]
    subprocess.run(["tc", "qdisc", "replace", "dev", info.bridge, "root", *tbf], check=True)
    for host in info.hosts:
        subprocess.run(["ip", "netns", "exec", host.netns, "tc", "qdisc", "replace", "dev", "eth0", "root", *tbf],
                       check=True)


def configure(info: LabInfo, out: Path, state: Path, parallel: int) -> None:
    data = yaml.safe_load(Path(info.config_path).read_text())
    data["state"] = f"sqlite:///{state}"
    strategy = data["apps"][APP]["strategy"]
    strategy.update({"canary": {}, "batch": {"percent": 10}, "max_parallel": parallel, "prestage": "always"})
    out.write_text(yaml.safe_dump(data, sort_keys=False))


async def on_all(ssh: SshConfig, hosts: list[Host], command: str, parallel: int) -> float:
    """Run ``command`` on every host over SSH (connections opened first), ``parallel`` at a time; the wall
    seconds of the commands."""
    gate = asyncio.Semaphore(parallel)
    connector = SshConnector(ssh)

    async def connect(host: Host) -> None:
        async with gate:
            await connector.connect(host)

    await asyncio.gather(*(connect(h) for h in hosts))

    async def one(host: Host) -> None:
        async with gate:
            transport = await connector.connect(host)
            await transport.run(command, timeout=1800)

    started = time.monotonic()
    try:
        await asyncio.gather(*(one(h) for h in hosts))
        return time.monotonic() - started
    finally:
        await connector.close()


def graylift_prestage(gl: Graylift, profile: cProfile.Profile | None = None
                      ) -> tuple[float, dict[str, Any], dict[str, float]]:
    """(a): a release with pre-staging, driven through its pre-stage phase only, then aborted (no host is
    restarted: the bench times staging). The wall seconds and the phase's summary."""
    rec = asyncio.run(gl.start_release(APP, ENV, VERSION, started_by="bench/staging.py"))
    engine = gl.engine()

    async def phase() -> float:
        async with engine._held(rec.id) as drive:  # the engine's own drive, under the release's lease
            current = drive.move(drive.store.get_release(rec.id), ReleaseState.RUNNING, "bench: pre-stage only")
            started = time.monotonic()
            if profile is not None:
                profile.enable()
            await drive.prestage(current)
            if profile is not None:
                profile.disable()
            return time.monotonic() - started

    seconds = asyncio.run(phase())
    summary = gl.store.get_release(rec.id).plan["prestage"]
    each = sorted(float(e.detail["seconds"]) for e in gl.store.journal_entries(rec.id)
                  if e.step == "prestage" and e.event == "staged")
    transfers = {"median": round(statistics.median(each), 3), "max": round(each[-1], 3)} if each else {}
    gl.request(rec.id, "abort")
    asyncio.run(engine.drive(rec.id))
    return seconds, summary, transfers


def scp_all(info: LabInfo, hosts: list[Host], archive: Path, digest: str) -> float:
    """(c): scp to every host, SCP_PARALLEL at a time, each followed by ssh: verify the sha256, unpack."""
    opts = ["-i", info.client_key, "-o", f"UserKnownHostsFile={info.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes"]
    check = (f"mkdir -p /srv/bench-c && cd /srv/bench-c && mv /srv/bench-c.tar.gz p.tar.gz && "
             f"echo {digest}' *p.tar.gz' | sha256sum -c --quiet && tar -xzf p.tar.gz")

    def one(host: Host) -> None:
        target = f"root@{host.address}"
        subprocess.run(["scp", "-q", *opts, str(archive), f"{target}:/srv/bench-c.tar.gz"], check=True)
        subprocess.run(["ssh", *opts, target, check], check=True)

    started = time.monotonic()
    with ThreadPoolExecutor(SCP_PARALLEL) as pool:
        list(pool.map(one, hosts))
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--mib", type=int, default=100, help="package size (random bytes)")
    parser.add_argument("--link", default="1gbit", help="tc rate of every machine's link, or 'none'")
    parser.add_argument("--parallel", type=int, default=200, help="graylift max_parallel and (b)'s concurrency")
    parser.add_argument("--tmpfs", type=float, default=0.0, help="GiB: put the lab's host dirs on a tmpfs")
    parser.add_argument("--lab", default="stg")
    parser.add_argument("--ways", default="repository,scp,fanout", help="which ways to run (comma-separated)")
    parser.add_argument("--profile", action="store_true", help="print where the controller's time goes in (a)")
    args = parser.parse_args()

    state_root = Path(f"/var/lib/graylift-bench-{args.lab}") if args.tmpfs else None  # not under /run, /tmp
    if state_root is not None:
        state_root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(args.tmpfs * 1024)}m", "tmpfs", str(state_root)],
                       check=True)
    lab_down(args.lab, state_root)
    figures: dict[str, Any] = {}
    try:
        started = time.monotonic()
        info = lab_up(args.lab, hosts=args.hosts, apps=(APP,), state_root=state_root)
        figures["lab_up_seconds"] = round(time.monotonic() - started, 1)
        archive, digest = build_package(Path(info.state_dir) / "artifacts", args.mib)
        size = archive.stat().st_size
        if args.link != "none":
            limit_links(info, args.link)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "graylift.yaml"
            configure(info, config, Path(tmp) / "state.db", args.parallel)
            gl = Graylift(config)
            gl.store.replace_hosts(APP, ENV, load_hosts_file(Path(info.hosts_file)))
            hosts = list(load_hosts_file(Path(info.hosts_file)))
            snap = yaml.safe_load(config.read_text())["ssh"]
            connector = SshConfig.model_validate(snap | {"max_connections": max(200, args.hosts),
                                                         "connect_timeout": 120})
            url = f"http://{info.bridge_address}:{artifact_port(info)}/{APP}/{VERSION}/{archive.name}"
            clean = "rm -rf /srv/bench-b /srv/bench-c /srv/bench-c.tar.gz /srv/pyapp/releases/9.0.0"

            fetch = (f"mkdir -p /srv/bench-b && cd /srv/bench-b && curl -fsS -o p.tar.gz {q(url)} && "
                     f"echo {digest}' *p.tar.gz' | sha256sum -c --quiet && tar -xzf p.tar.gz")
            ways = args.ways.split(",")
            if "repository" in ways:
                figures["repository_seconds"] = round(asyncio.run(on_all(connector, hosts, fetch, args.parallel)), 2)
                asyncio.run(on_all(connector, hosts, clean, 50))
            if "scp" in ways:
                figures["scp_seconds"] = round(scp_all(info, hosts, archive, digest), 2)
                asyncio.run(on_all(connector, hosts, clean, 50))
            if "fanout" in ways:
                profile = cProfile.Profile() if args.profile else None
                seconds, summary, transfers = graylift_prestage(gl, profile)
                figures["fanout_seconds"] = round(seconds, 2)
                figures["fanout_summary"] = {k: v for k, v in summary.items() if k != "from_repository"} | {
                    "from_repository": len(summary["from_repository"])}
                figures["fanout_transfer_seconds"] = transfers
                if profile is not None:
                    pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
            gl.close()
    finally:
        lab_down(args.lab, state_root)
        if state_root is not None:
            subprocess.run(["umount", str(state_root)], check=False)
    fan = figures.get("fanout_seconds") or float("nan")
    result = {
        "bench": "staging",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "command": "sudo .venv/bin/python bench/staging.py " + " ".join(sys.argv[1:]),
        "hosts": args.hosts, "package_bytes": size, "link": args.link,
        "host_dirs": "tmpfs" if args.tmpfs else "disk (shared by every lab host)",
        "scp_parallel": SCP_PARALLEL, "repository_parallel": args.parallel,
        **figures,
        "scp_over_fanout": round(figures.get("scp_seconds", float("nan")) / fan, 2),
        "repository_over_fanout": round(figures.get("repository_seconds", float("nan")) / fan, 2),
    }
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps([*history, result], indent=2) + "\n")
    return 0


def artifact_port(info: LabInfo) -> int:
    data = yaml.safe_load(Path(info.config_path).read_text())
    url = data["repositories"]["lab"]["url"]
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


if __name__ == "__main__":
    sys.exit(main())
