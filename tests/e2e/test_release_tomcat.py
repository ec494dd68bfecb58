"""A real Java war on Tomcat 10, released through graylift on a real 6-host lab, under load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from graylift.core.state import HostState, ReleaseState
from graylift.lab import LabInfo
from graylift.lab.inspect import serving_versions
from graylift.lab.load import BackgroundLoad
from tests.e2e.conftest import lab_fixture, make_deploy, settled

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "shop"
lab = lab_fixture(APP, hosts=6, name=f"tc{os.getpid() % 10000}")
STRATEGY = {"canary": {"group": "beta", "count": 1, "bake": 1, "promote": "auto"}, "batch": {"size": 2}}


def test_war_release_and_rollback_on_tomcat(lab: LabInfo, tmp_path: Path) -> None:
    d = make_deploy(lab, APP, tmp_path, **STRATEGY)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    assert set(serving_versions(lab, APP).values()) == {"1.0.0"}

    with BackgroundLoad(lab.apps[APP].frontend_url + "/", connections=6) as load:
        rec = d.release("2.0.0")
        report = load.stop()
    settled(rec, ReleaseState.SUCCEEDED)
    assert set(d.versions().values()) == {"2.0.0"}
    assert set(serving_versions(lab, APP).values()) == {"2.0.0"}  # the war was unpacked and is served
    d.assert_fleet_clean()
    assert report.sent > 500 and report.non_2xx == 0 and report.errors == 0, report

    with BackgroundLoad(lab.apps[APP].frontend_url + "/", connections=6) as load:
        back = d.rollback()
        report = load.stop()
    settled(back, ReleaseState.SUCCEEDED)
    assert set(serving_versions(lab, APP).values()) == {"1.0.0"}
    d.assert_fleet_clean()
    assert report.non_2xx == 0 and report.errors == 0, report


def test_broken_war_canary_is_reverted(lab: LabInfo, tmp_path: Path) -> None:
    # The lab's health budget (120 tries, 30 s) stays: the revert starts 1.0.0 under the same budget, and a Tomcat
    # start on a CI machine running three lab workers can take more than 5 s (the revert then needs attention).
    d = make_deploy(lab, APP, tmp_path, **STRATEGY)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    rec = d.release("3.0.0")  # its /health answers 500
    settled(rec, ReleaseState.PAUSED)
    runs = d.gl.store.host_runs(rec.id)
    assert [r.state for r in runs if r.batch == 0] == [HostState.FAILED], [(r.host, r.error, r.attention) for r in runs]
    assert {r.state for r in runs if r.batch > 0} == {HostState.PENDING}
    assert set(serving_versions(lab, APP).values()) == {"1.0.0"}
    d.assert_fleet_clean()
