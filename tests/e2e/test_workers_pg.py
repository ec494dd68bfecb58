"""Several `graylift worker` processes on one PostgreSQL share releases the way Airflow's schedulers share DAG
runs: each claims releases through the fenced leases, several releases run at once spread over the workers,
and when the worker driving a release is killed with SIGKILL another one finishes it. Real lab, real workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.state import ReleaseState
from graylift.lab import LabInfo
from graylift.service import Graylift
from tests.e2e.conftest import GRAYLIFT, Deploy, lab_fixture, make_deploy, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow, pytest.mark.postgres]

APP = "pyapp"
ENVS = ("prod", "staging", "test")  # three clusters of three hosts each: three releases at once
lab = lab_fixture(APP, hosts=9, name=f"wk{os.getpid() % 10000}")


def start_workers(config: Path, count: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        with (logs / f"worker-{i}.log").open("wb") as out:  # each worker drives one release at a time
            procs.append(subprocess.Popen([*GRAYLIFT, "-c", str(config), "worker", "--max-releases", "1",
                                           "--interval", "0.3"], stdout=out, stderr=subprocess.STDOUT))
    return procs


def owners(gl: Graylift, rid: int) -> list[str]:
    """Who claimed the release, in order (owner ids are host:pid:random)."""
    return [e.owner or "" for e in gl.store.journal_entries(rid) if e.step == "lease" and e.event == "claimed"]


def pid_of(owner: str) -> int:
    return int(owner.split(":")[1])


def release_everywhere(gl: Graylift, version: str) -> dict[str, int]:
    return {env: asyncio.run(gl.start_release(APP, env, version, started_by="test")).id for env in ENVS}


def wait_finished(gl: Graylift, rids: dict[str, int], timeout: float) -> None:
    wait_until(lambda: all(gl.store.get_release(r).finished for r in rids.values()), timeout,
               "every release to finish")
    for env, rid in rids.items():
        rec = gl.store.get_release(rid)
        assert rec.state is ReleaseState.SUCCEEDED, f"{env}: release #{rid} {rec.state}: {rec.message}"


def test_three_workers_share_releases_and_one_killed_mid_release_is_taken_over(
        lab: LabInfo, tmp_path: Path, pg_databases: Any) -> None:
    url = pg_databases.create()
    d: Deploy = make_deploy(lab, APP, tmp_path, canary={"count": 1, "bake": 0, "promote": "auto"},
                            batch={"size": 1})
    data = yaml.safe_load(d.config.read_text())
    data["state"] = url
    d.config.write_text(yaml.safe_dump(data, sort_keys=False))
    d.gl.close()
    d.gl = gl = Graylift(d.config)
    hosts = load_hosts_file(Path(lab.hosts_file))
    for i, env in enumerate(ENVS):
        gl.store.replace_hosts(APP, env, hosts[3 * i:3 * i + 3])
    workers = start_workers(d.config, 3, tmp_path)
    try:
        first = release_everywhere(gl, "1.0.0")
        wait_finished(gl, first, 180)
        drivers = {pid_of(owners(gl, rid)[0]) for rid in first.values()}
        assert len(drivers) == 3, f"three releases at once went to {len(drivers)} worker(s)"  # spread over all
        assert drivers == {w.pid for w in workers}

        second = release_everywhere(gl, "2.0.0")
        prod = second["prod"]
        wait_until(lambda: any(e.step == "quiet" and e.event == "begin" and e.host
                               for e in gl.store.journal_entries(prod)), 120, "prod's driver to drain a host")
        victim = pid_of(owners(gl, prod)[-1])
        os.kill(victim, signal.SIGKILL)  # the worker driving prod dies mid-host
        killed = next(w for w in workers if w.pid == victim)
        killed.wait(10)
        wait_finished(gl, second, 240)
        taken = owners(gl, prod)
        assert len(taken) >= 2 and pid_of(taken[-1]) != victim, taken  # another worker finished it
        assert set(d.versions().values()) == {"2.0.0"}
        d.assert_fleet_clean()  # nothing left drained, muted or disabled by the killed worker
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for w in workers:
            try:
                w.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.kill()
        gl.close()
