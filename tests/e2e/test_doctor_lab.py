"""`graylift doctor` on a real lab after chaos: a release killed -9 with a host stopped mid-batch (out of HAProxy and
ZooKeeper, muted in Alertmanager), found from outside by `graylift doctor`, put back by `--repair`, checked from
outside graylift, and the release then finished by `graylift resume`; then a host drained in HAProxy and stopped
by hand, found and walked back. One lab for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from graylift.core.state import HostState, ReleaseState
from graylift.lab import LabInfo, host_exec
from graylift.lab.inspect import haproxy_command, haproxy_servers, serving_versions
from tests.e2e.conftest import GRAYLIFT, lab_fixture, make_deploy, settled, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
lab = lab_fixture(APP, hosts=4, name=f"doc{os.getpid() % 10000}")

# a slow start keeps a host stopped long enough to be caught there by the kill
STRATEGY = {"canary": {"group": "beta", "count": 1, "bake": 1, "promote": "auto"}, "batch": {"size": 1},
            "commands": {"start": "sleep 3; sh {current}/bin/start"}}


def test_doctor_finds_and_repairs_hosts_after_chaos(lab: LabInfo, tmp_path: Path) -> None:
    d = make_deploy(lab, APP, tmp_path, **STRATEGY)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    assert d.cli("doctor", APP, "--env", "prod").returncode == 0

    proc = subprocess.Popen([*GRAYLIFT, "-c", str(d.config), "release", APP, "2.0.0", "--env", "prod", "--wait"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stopped_mid_batch() -> bool:
        rec = d.gl.store.active_release(APP, "prod")
        return rec is not None and rec.cursor >= 1 and any(
            r.step == "stop" for r in d.gl.store.host_runs(rec.id) if r.batch == rec.cursor)

    try:  # stop, switch, start and health are one command on the host: the record says "stop" through it
        wait_until(stopped_mid_batch, 180, "a host of a rolling batch to be stopped, starting")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rec = d.gl.store.active_release(APP, "prod")
    assert rec is not None and rec.state is ReleaseState.RUNNING
    [host] = [r.host for r in d.gl.store.host_runs(rec.id) if r.state is HostState.RUNNING]

    found = d.cli("doctor", APP, "--env", "prod")
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"release #{rec.id} stopped at stop" in found.stdout and host in found.stdout
    listed = json.loads(d.cli("doctor", APP, "--env", "prod", "--output", "json").stdout)
    assert [f["host"] for f in listed] == [host]
    problems = " ".join(listed[0]["problems"])
    assert "out of traffic in haproxy" in problems and "muted in alertmanager" in problems, problems
    assert listed[0]["repair"] == "revert" and not listed[0]["repaired"]

    repaired = d.cli("doctor", APP, "--env", "prod", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    # from outside graylift: HAProxy serves it, no silence, no ZooKeeper override, its app answers 1.0.0
    d.assert_fleet_clean()
    assert d.versions()[host] == "1.0.0" and serving_versions(lab, APP)[host] == "1.0.0"
    assert d.cli("doctor", APP, "--env", "prod").returncode == 0

    done = d.cli("resume", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    settled(d.gl.store.get_release(rec.id), ReleaseState.SUCCEEDED)
    assert set(d.versions().values()) == {"2.0.0"}
    assert set(serving_versions(lab, APP).values()) == {"2.0.0"}
    d.assert_fleet_clean()

    # more chaos, from outside graylift: a settled host drained in HAProxy by hand and its app stopped
    other = next(h.name for h in lab.hosts if h.name != host)
    haproxy_command(lab, f"set server {APP}/{other} state drain")  # the lab names each server after its host
    assert not haproxy_servers(lab, APP)[other].serving
    host_exec(lab, other, f"sh /srv/{APP}/current/bin/stop", timeout=30)
    found = d.cli("doctor", APP, "--env", "prod")
    assert found.returncode == 1 and f"{other} ({APP}, prod): out of traffic in haproxy" in found.stdout, found.stdout
    assert "not serving" in found.stdout and "--repair will: take_out, quiet, stop, start, health, put_back" in \
        found.stdout, found.stdout
    repaired = d.cli("doctor", APP, "--env", "prod", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    d.assert_fleet_clean()
    assert serving_versions(lab, APP)[other] == "2.0.0"
    assert d.cli("doctor", APP, "--env", "prod").returncode == 0
