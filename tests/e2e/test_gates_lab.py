"""The gates on a real lab, through the CLI: a version reaches prod only after it succeeded in staging
(`promote-env`), and a scheduled release is started by `graylift worker` when it is due."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.lab import LabInfo
from graylift.lab.inspect import host_versions
from tests.e2e.conftest import GRAYLIFT, Deploy, lab_fixture, make_deploy, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
lab = lab_fixture(APP, hosts=6, name=f"gt{os.getpid() % 10000}")


@pytest.fixture
def d(lab: LabInfo, tmp_path: Path) -> Deploy:
    """staging = the first three hosts, prod = the other three; prod takes a version only after staging."""
    deploy = make_deploy(lab, APP, tmp_path, canary={"count": 1, "bake": 0, "promote": "auto"}, batch={"size": 1})
    data = yaml.safe_load(deploy.config.read_text())
    data["apps"][APP]["envs"] = {"prod": {"promotion": {"after": "staging"}}}
    deploy.config.write_text(yaml.safe_dump(data, sort_keys=False))
    hosts = load_hosts_file(Path(lab.hosts_file))
    deploy.gl.store.replace_hosts(APP, "staging", hosts[:3])
    deploy.gl.store.replace_hosts(APP, "prod", hosts[3:])
    return deploy


def versions(d: Deploy, names: list[str]) -> set[str | None]:
    found = host_versions(d.info, APP)
    return {found[n] for n in names}


def test_a_version_goes_to_prod_only_through_staging(d: Deploy, lab: LabInfo) -> None:
    staging, prod = [h.name for h in lab.hosts[:3]], [h.name for h in lab.hosts[3:]]
    refused = d.cli("release", APP, "1.0.0", "--env", "prod", "--wait")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "goes to prod only after it succeeded in staging" in refused.stderr
    assert versions(d, prod) == {None}  # refused before any host was touched
    d.cli("release", APP, "1.0.0", "--env", "staging", "--wait", check=True)
    assert versions(d, staging) == {"1.0.0"}
    d.cli("promote-env", APP, "1.0.0", "--from", "staging", "--to", "prod", "--wait", check=True)
    assert versions(d, prod) == {"1.0.0"}
    d.assert_fleet_clean()


def test_a_scheduled_release_is_started_by_a_worker_when_due(d: Deploy, lab: LabInfo, tmp_path: Path) -> None:
    staging = [h.name for h in lab.hosts[:3]]
    at = (datetime.now(UTC) + timedelta(seconds=5)).isoformat(timespec="seconds")
    d.cli("schedule", APP, "1.0.0", "--env", "staging", "--at", at, check=True)
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([*GRAYLIFT, "-c", str(d.config), "worker", "--interval", "0.3"], stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        def started() -> dict[str, object]:
            [row] = json.loads(d.cli("schedules", APP, "--env", "staging", "-o", "json", check=True).stdout)
            return dict(row)

        wait_until(lambda: started()["state"] not in ("waiting", "starting"), 60,
                   "the worker to start the scheduled release")
        row = started()
        assert row["state"] == "started" and isinstance(row["release_id"], int), row
        rid = int(row["release_id"])
        rec = d.gl.store.get_release(rid)
        assert rec.created_at >= datetime.fromisoformat(at) - timedelta(seconds=1)  # not before it was due
        wait_until(lambda: d.gl.store.get_release(rid).finished, 120, "the scheduled release to finish")
        assert d.gl.store.get_release(rid).state.value == "succeeded"
        assert versions(d, staging) == {"1.0.0"}
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
