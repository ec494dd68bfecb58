"""Graceful offline that checks what it asked for: a load balancer left out of the config is caught before the
host stops, and the waits (registry propagation, drain) are visible in the journal and in `graylift status`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from graylift.core.state import HostState, ReleaseState
from graylift.lab import LabInfo
from graylift.lab.files import nginx_traffic_entry
from graylift.lab.inspect import app_processes
from graylift.lab.load import BackgroundLoad
from graylift.lab.nginx import rogue_address, start_rogue_nginx
from tests.e2e.conftest import Deploy, lab_fixture, make_deploy, settled

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
lab = lab_fixture(APP, hosts=4, name=f"tr{os.getpid() % 10000}")
STRATEGY = {"canary": {"group": "beta", "count": 1, "bake": 0, "promote": "auto"}, "batch": {"size": 1}}


def with_checks(d: Deploy, lab: LabInfo) -> Deploy:
    """Both LBs (HAProxy and nginx) in the config, and the traffic check after take-out."""
    data = yaml.safe_load(d.config.read_text())
    cfg = data["apps"][APP]
    cfg["traffic"] = [cfg["traffic"][0], nginx_traffic_entry(lab, APP), *cfg["traffic"][1:]]
    cfg["traffic_check"] = {"port": lab.apps[APP].port, "window": 1.5, "allowed": [lab.bridge_address]}
    d.config.write_text(yaml.safe_dump(data, sort_keys=False))
    return make_deploy_from(d)


def make_deploy_from(d: Deploy) -> Deploy:
    from graylift.service import Graylift

    return Deploy(d.info, d.app, d.config, Graylift(d.config))


def test_waits_are_journaled_and_shown_in_status(lab: LabInfo, tmp_path: Path) -> None:
    d = with_checks(make_deploy(lab, APP, tmp_path, **STRATEGY), lab)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    rec = d.release("2.0.0")
    settled(rec, ReleaseState.SUCCEEDED)
    take_outs = [e for e in d.gl.store.journal_entries(rec.id) if e.step == "take_out" and e.event == "done"]
    assert len(take_outs) == 4
    assert all(e.detail["propagation_seconds"] == {"zookeeper:/dubbo/com.graylift.lab.PyApp": 1} for e in take_outs)
    quiets = [e for e in d.gl.store.journal_entries(rec.id) if e.step == "quiet" and e.event == "done"]
    assert all("waited_seconds" in e.detail and "traffic_check" in e.detail for e in quiets)
    shown = d.cli("status", str(rec.id), check=True).stdout
    assert "registry propagation waits (zookeeper:/dubbo/com.graylift.lab.PyApp): 4, 1.0s each" in shown
    assert "drain waits: 4" in shown
    d.assert_fleet_clean()


def test_lb_left_out_of_the_config_is_named_and_the_host_not_stopped(lab: LabInfo, tmp_path: Path) -> None:
    d = with_checks(make_deploy(lab, APP, tmp_path, **STRATEGY), lab)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    before = app_processes(lab, "pyapp-server")
    url, stop_rogue = start_rogue_nginx(lab, APP)
    try:
        with BackgroundLoad(url + "/", connections=4, rate=200):
            rec = d.release("2.0.0")
    finally:
        stop_rogue()
    settled(rec, ReleaseState.PAUSED)
    runs = d.gl.store.host_runs(rec.id)
    canary = next(r for r in runs if r.batch == 0)
    assert canary.state == HostState.FAILED
    assert rogue_address(lab) in (canary.error or ""), canary.error
    begun = {e.step for e in d.gl.store.journal_entries(rec.id, canary.host) if e.event == "begin"}
    assert "stop" not in begun and "start" not in begun  # the host was never stopped
    assert app_processes(lab, "pyapp-server") == before
    assert set(d.versions().values()) == {"1.0.0"}
    assert {r.state for r in runs if r.batch > 0} == {HostState.PENDING}
    d.assert_fleet_clean()
