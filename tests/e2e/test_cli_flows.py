"""The control verbs as a person or a pipeline uses them: background workers, manual promotion, pause and
resume, retry of failed hosts, automatic rollback on failure, history."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from graylift.core.state import HostState, ReleaseState
from graylift.lab import LabInfo
from tests.e2e.conftest import Deploy, lab_fixture, make_deploy, settled, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
lab = lab_fixture(APP, hosts=6, name=f"cli{os.getpid() % 10000}")
BASE = {"canary": {"group": "beta", "count": 1, "bake": 0, "promote": "auto"}, "batch": {"size": 2}}


def state(d: Deploy, rid: int) -> str:
    return d.gl.store.get_release(rid).state


@pytest.fixture
def deploy(lab: LabInfo, tmp_path: Path) -> Deploy:
    d = make_deploy(lab, APP, tmp_path, **BASE)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    return d


def test_manual_promotion_through_a_background_worker(deploy: Deploy, lab: LabInfo) -> None:
    d = make_deploy(lab, APP, deploy.config.parent / "manual",
                    canary={"group": "beta", "count": 1, "bake": 1, "promote": "manual"}, batch={"size": 2})
    started = d.cli("release", APP, "2.0.0", "--env", "prod", check=True)  # returns at once
    assert "goes on in the background" in started.stdout
    rid = d.gl.store.list_releases(APP, "prod", limit=1)[0].id
    wait_until(lambda: state(d, rid) == ReleaseState.AWAITING_PROMOTION, 60, "the canary to bake")
    versions = d.versions()
    assert sorted(versions.values()) == ["1.0.0"] * 5 + ["2.0.0"]  # only the canary moved
    assert f"graylift promote {rid}" in d.gl.store.get_release(rid).message
    d.cli("promote", str(rid), check=True)
    wait_until(lambda: d.gl.store.get_release(rid).finished, 90, "the promoted release to finish")
    settled(d.gl.store.get_release(rid), ReleaseState.SUCCEEDED)
    assert set(d.versions().values()) == {"2.0.0"}
    d.assert_fleet_clean()
    history = d.cli("history", APP, "--env", "prod", check=True).stdout
    assert "current version: 2.0.0" in history


def test_pause_then_resume(deploy: Deploy) -> None:
    d = deploy
    d.cli("release", APP, "2.0.0", "--env", "prod", check=True)
    rid = d.gl.store.list_releases(APP, "prod", limit=1)[0].id
    wait_until(lambda: d.gl.store.get_release(rid).cursor >= 1, 60, "the canary to pass")
    d.cli("pause", str(rid), check=True)
    wait_until(lambda: state(d, rid) == ReleaseState.PAUSED, 60, "the release to pause at a safe point")
    runs = d.gl.store.host_runs(rid)
    assert {r.state for r in runs} <= {HostState.DONE, HostState.PENDING}  # nobody left mid-flow
    assert any(r.state == HostState.PENDING for r in runs)
    d.assert_fleet_clean()
    done = d.cli("resume", str(rid), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    settled(d.gl.store.get_release(rid), ReleaseState.SUCCEEDED)
    assert set(d.versions().values()) == {"2.0.0"}


def test_retry_after_a_failed_host(deploy: Deploy, lab: LabInfo) -> None:
    from graylift.lab import partition

    d = deploy
    rid = asyncio.run(d.gl.start_release(APP, "prod", "2.0.0", started_by="test")).id  # the preflight saw it up
    partition(lab, "pyapp-04", down=True)  # then it is cut off, before its turn
    try:
        first = d.cli("resume", str(rid), "--wait")
    finally:
        partition(lab, "pyapp-04", down=False)
    assert first.returncode == 1
    settled(d.gl.store.get_release(rid), ReleaseState.PAUSED)
    assert d.gl.store.host_run(rid, "pyapp-04").state == HostState.FAILED
    again = d.cli("retry", str(rid), "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    settled(d.gl.store.get_release(rid), ReleaseState.SUCCEEDED)
    assert set(d.versions().values()) == {"2.0.0"}
    d.assert_fleet_clean()


def test_on_failure_rollback_rolls_back_by_itself(deploy: Deploy, lab: LabInfo) -> None:
    d = make_deploy(lab, APP, deploy.config.parent / "auto", canary={}, batch={"size": 2},
                    on_failure="rollback", health={"retries": 8})
    done = d.cli("release", APP, "3.0.0", "--env", "prod", "--wait")  # 3.0.0 fails its health check
    assert done.returncode == 1
    rec = d.gl.store.list_releases(APP, "prod", limit=1)[0]
    settled(rec, ReleaseState.ROLLED_BACK)
    assert set(d.versions().values()) == {"1.0.0"}
    d.assert_fleet_clean()


def test_bad_input_gets_a_message_not_a_traceback(deploy: Deploy) -> None:
    d = deploy
    for args, words, codes in [
        (("release", APP, "7.7.7", "--env", "prod"), "is not in the repository", (3,)),  # the preflight
        (("release", "nope", "1.0.0", "--env", "prod"), "unknown app 'nope'", (2,)),
        (("release", APP, "../../etc", "--env", "prod"), "not a plain name", (2, 3)),
        (("plan", APP, "--env", "staging"), "no hosts", (2,)),
        (("promote", "999"), "999", (2,)),
    ]:
        done = d.cli(*args)
        assert done.returncode in codes, (args, done.stdout, done.stderr)
        assert words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout
    assert d.gl.store.active_release(APP, "prod") is None
