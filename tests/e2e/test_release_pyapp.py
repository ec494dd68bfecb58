"""Releases of the Python app on a real 10-host lab: the scenarios the release engine must survive."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from graylift.core.state import HostState, ReleaseState
from graylift.errors import ReleaseConflict
from graylift.lab import LabInfo, partition
from graylift.lab.load import BackgroundLoad
from graylift.runtime import silence_reason
from tests.e2e.conftest import GRAYLIFT, Deploy, lab_fixture, make_deploy, settled, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
lab = lab_fixture(APP, hosts=10, name=f"e2e{os.getpid() % 10000}")

FAST = {"canary": {"group": "beta", "count": 1, "bake": 1, "promote": "auto"}, "batch": {"size": 4}}


@pytest.fixture
def deploy(lab: LabInfo, tmp_path: Path) -> Deploy:
    """A fresh state db; every host brought to 1.0.0 by graylift itself (a release, or a no-op if there)."""
    d = make_deploy(lab, APP, tmp_path, **FAST)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    assert set(d.versions().values()) == {"1.0.0"}
    return d


def journal_hosts(d: Deploy, release_id: int) -> set[str]:
    return {e.host for e in d.gl.store.journal_entries(release_id) if e.host}


def test_release_and_rollback_under_load_drop_no_request(deploy: Deploy, lab: LabInfo) -> None:
    with BackgroundLoad(lab.apps[APP].frontend_url + "/", connections=8) as load:
        rec = deploy.release("2.0.0")
        during_release = load.stop()
    settled(rec, ReleaseState.SUCCEEDED)
    assert set(deploy.versions().values()) == {"2.0.0"}
    deploy.assert_fleet_clean()
    assert during_release.sent > 1000
    assert during_release.non_2xx == 0 and during_release.errors == 0, during_release

    with BackgroundLoad(lab.apps[APP].frontend_url + "/", connections=8) as load:
        back = deploy.rollback()
        during_rollback = load.stop()
    settled(back, ReleaseState.SUCCEEDED)
    assert back.kind == "rollback" and back.version == "1.0.0"
    assert set(deploy.versions().values()) == {"1.0.0"}
    deploy.assert_fleet_clean()
    assert during_rollback.non_2xx == 0 and during_rollback.errors == 0, during_rollback
    # the journal has every step of every host, begun and done, in the graceful order
    steps = [e.step for e in deploy.gl.store.journal_entries(rec.id, "pyapp-05") if e.event == "done"]
    assert steps == ["precheck", "stage", "mute", "take_out", "quiet", "stop", "switch", "start", "health",
                     "put_back", "unmute"]


def test_canary_that_fails_health_stops_the_release_and_is_rolled_back(deploy: Deploy) -> None:
    rec = deploy.release("3.0.0")  # 3.0.0 answers 500 on /health
    settled(rec, ReleaseState.PAUSED)
    runs = {r.host: r for r in deploy.gl.store.host_runs(rec.id)}
    canary = next(h for h, r in runs.items() if r.batch == 0)
    assert runs[canary].state == HostState.FAILED
    assert "health" in (runs[canary].error or "")
    assert {r.state for h, r in runs.items() if h != canary} == {HostState.PENDING}
    assert journal_hosts(deploy, rec.id) == {canary}  # no other host was touched
    assert set(deploy.versions().values()) == {"1.0.0"}  # the canary is back on 1.0.0
    deploy.assert_fleet_clean()
    assert "canary failed" in rec.message


def test_batch_of_half_the_cluster_is_refused_at_plan_time(lab: LabInfo, tmp_path: Path) -> None:
    d = make_deploy(lab, APP, tmp_path, batch={"size": 5})
    done = d.cli("plan", APP, "--env", "prod")
    assert done.returncode == 3  # refused by a rule
    assert "5 of 10 hosts" in done.stderr and "50%" in done.stderr
    assert "Traceback" not in done.stderr
    done = d.cli("release", APP, "2.0.0", "--env", "prod", "--wait")
    assert done.returncode == 3 and "50%" in done.stderr
    assert d.gl.store.list_releases(APP, "prod") == []  # nothing was started


def test_sha256_mismatch_leaves_the_host_untouched(deploy: Deploy, lab: LabInfo) -> None:
    # publish 9.9.9 whose .sha256 does not match the package (a corrupted upload)
    src = Path(lab.artifact_dir) / APP / "2.0.0" / f"{APP}-2.0.0.tar.gz"
    dst = Path(lab.artifact_dir) / APP / "9.9.9"
    dst.mkdir(exist_ok=True)
    shutil.copy(src, dst / f"{APP}-9.9.9.tar.gz")
    (dst / f"{APP}-9.9.9.tar.gz.sha256").write_text(hashlib.sha256(b"something else").hexdigest() + "\n")
    try:
        rec = deploy.release("9.9.9")
    finally:
        shutil.rmtree(dst)
    settled(rec, ReleaseState.PAUSED)
    runs = deploy.gl.store.host_runs(rec.id)
    failed = [r for r in runs if r.state == HostState.FAILED]
    assert len(failed) == 1 and "sha256" in (failed[0].error or "") and "not touched" in (failed[0].error or "")
    steps = {e.step for e in deploy.gl.store.journal_entries(rec.id, failed[0].host)}
    assert "mute" not in steps and "take_out" not in steps and "stop" not in steps
    assert set(deploy.versions().values()) == {"1.0.0"}
    deploy.assert_fleet_clean()


def test_kill_9_mid_batch_then_resume_completes(deploy: Deploy) -> None:
    proc = subprocess.Popen([*GRAYLIFT, "-c", str(deploy.config), "release", APP, "2.0.0", "--env", "prod",
                             "--wait"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def in_second_batch_stopped() -> bool:
        rec = deploy.gl.store.active_release(APP, "prod")
        if rec is None or rec.cursor < 2:
            return False
        return any(r.step in ("stop", "switch", "start") for r in deploy.gl.store.host_runs(rec.id) if r.batch == 2)

    wait_until(in_second_batch_stopped, 120, "a host of batch 2 to be mid-restart")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rec = deploy.gl.store.active_release(APP, "prod")
    assert rec is not None and rec.state == ReleaseState.RUNNING
    in_flight = [r.host for r in deploy.gl.store.host_runs(rec.id) if r.state == HostState.RUNNING]
    assert in_flight, "the kill should have caught hosts mid-flow"

    done = deploy.cli("resume", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    final = deploy.gl.store.get_release(rec.id)
    settled(final, ReleaseState.SUCCEEDED)
    assert {r.state for r in deploy.gl.store.host_runs(rec.id)} == {HostState.DONE}
    assert set(deploy.versions().values()) == {"2.0.0"}
    deploy.assert_fleet_clean()


def test_rollback_mid_release_returns_every_touched_host(deploy: Deploy) -> None:
    async def release_then_roll_back() -> int:
        rec = await deploy.gl.start_release(APP, "prod", "2.0.0", started_by="test")
        task = asyncio.create_task(deploy.gl.engine().drive(rec.id))
        while deploy.gl.store.get_release(rec.id).cursor < 2:  # canary and batch 1 done
            await asyncio.sleep(0.1)
        await deploy.gl.start_rollback(APP, "prod", to_version=None, started_by="test")
        await task
        return rec.id

    rid = asyncio.run(release_then_roll_back())
    rec = deploy.gl.store.get_release(rid)
    settled(rec, ReleaseState.ROLLED_BACK)
    states = {r.state for r in deploy.gl.store.host_runs(rid)}
    assert HostState.ROLLED_BACK in states and HostState.DONE not in states
    assert set(deploy.versions().values()) == {"1.0.0"}
    deploy.assert_fleet_clean()


def test_second_release_of_same_app_env_is_refused(lab: LabInfo, tmp_path: Path) -> None:
    d = make_deploy(lab, APP, tmp_path, canary={"group": "beta", "bake": 0, "promote": "manual"})
    first = asyncio.run(d.gl.start_release(APP, "prod", "1.0.0", started_by="test"))
    with pytest.raises(ReleaseConflict, match=f"release #{first.id} of pyapp 1.0.0 \\(prod\\)"):
        asyncio.run(d.gl.start_release(APP, "prod", "2.0.0", started_by="test"))
    done = d.cli("release", APP, "2.0.0", "--env", "prod")
    assert done.returncode == 3 and f"#{first.id}" in done.stderr and "Traceback" not in done.stderr
    d.cli("abort", str(first.id), check=True)
    rec = asyncio.run(d.gl.engine().drive(first.id))
    settled(rec, ReleaseState.ABORTED)


def test_unreachable_host_is_absorbed_by_the_failure_budget(deploy: Deploy, lab: LabInfo) -> None:
    d = make_deploy(lab, APP, deploy.config.parent / "budget", **FAST,
                    failure_budget={"per_batch": 1, "total": 1})
    victim = "pyapp-06"
    started = asyncio.run(d.gl.start_release(APP, "prod", "2.0.0", started_by="test"))  # preflight saw it up
    partition(lab, victim, down=True)  # cut off after the preflight, before its turn
    try:
        rec = asyncio.run(d.gl.engine().drive(started.id))
    finally:
        partition(lab, victim, down=False)
    settled(rec, ReleaseState.SUCCEEDED)
    runs = {r.host: r for r in d.gl.store.host_runs(rec.id)}
    assert runs[victim].state == HostState.FAILED
    assert victim in (runs[victim].error or "")
    versions = d.versions()
    assert versions[victim] == "1.0.0"
    assert {v for h, v in versions.items() if h != victim} == {"2.0.0"}
    d.assert_fleet_clean()


def test_release_wait_reads_each_host_ahead_and_a_host_cut_off_after_its_read_is_left_untouched(
        deploy: Deploy, lab: LabInfo) -> None:
    """`release --wait` on real sshd hosts: every pre-check takes the read the preflight (or the batch before)
    took, and still asks the host to answer first (a ping on its connection): a host cut off after its read
    fails its pre-check with nothing muted in Alertmanager, nothing set in HAProxy or ZooKeeper, its release
    untouched."""
    d = make_deploy(lab, APP, deploy.config.parent / "ahead", **FAST, commands={"timeout": 5},
                    failure_budget={"per_batch": 1, "total": 1})
    began = datetime.now(UTC)  # release ids start again with each database: silences are told apart by time
    cli = subprocess.Popen([*GRAYLIFT, "-c", str(d.config), "release", APP, "2.0.0", "--env", "prod", "--wait"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = None
    try:
        wait_until(lambda: bool(d.gl.store.list_releases(APP, "prod", limit=1)), 60, "the release to start")
        rid = d.gl.store.list_releases(APP, "prod", limit=1)[0].id
        victim = d.gl.store.get_release(rid).plan["batches"][-1]["hosts"][0]  # its turn comes last
        wait_until(lambda: d.gl.store.get_release(rid).cursor >= 1, 120, "the canary to pass")
        partition(lab, victim, down=True)  # read by now (the preflight), cut off before its turn
        out, _ = cli.communicate(timeout=300)
    finally:
        if victim is not None:
            partition(lab, victim, down=False)
        cli.kill()
    rec = d.gl.store.get_release(rid)
    settled(rec, ReleaseState.SUCCEEDED)
    assert cli.returncode == 0, out
    runs = {r.host: r for r in d.gl.store.host_runs(rid)}
    assert runs[victim].state == HostState.FAILED, runs[victim]
    # the victim: its pre-check failed, and nothing else was begun (not muted, not taken out, not stopped)
    assert {(e.step, e.event) for e in d.gl.store.journal_entries(rid, victim)} <= {
        ("precheck", "begin"), ("precheck", "failed")}
    with urllib.request.urlopen(f"{lab.alertmanager_url}/api/v2/silences", timeout=5) as resp:
        ever = [s for s in json.load(resp) if s.get("comment") == silence_reason(rid, APP, "prod")
                and datetime.fromisoformat(s["startsAt"].replace("Z", "+00:00")) >= began]
    muted = {m["value"] for s in ever for m in s["matchers"]}
    assert victim not in muted and muted == set(runs) - {victim}, muted  # every other host was, once
    versions = d.versions()
    assert versions[victim] == "1.0.0" and {v for h, v in versions.items() if h != victim} == {"2.0.0"}
    d.assert_fleet_clean()  # the victim too: in HAProxy (never set), no ZooKeeper override, no silence
    # every other host's pre-check took a read taken before its turn (the preflight's, or during the batch before)
    ahead = {e.host: e.detail.get("read_ahead_seconds") for e in d.gl.store.journal_entries(rid)
             if e.step == "precheck" and e.event == "done"}
    assert set(ahead) == set(runs) - {victim}
    assert all(age is not None and 0 <= age <= 30 for age in ahead.values()), ahead


def test_hung_start_times_out_and_host_is_put_back(deploy: Deploy, lab: LabInfo) -> None:
    d = make_deploy(lab, APP, deploy.config.parent / "hung", **FAST, commands={"timeout": 4})
    rec = d.release("4.0.0")  # bin/start of 4.0.0 never returns
    settled(rec, ReleaseState.PAUSED)
    runs = {r.host: r for r in d.gl.store.host_runs(rec.id)}
    canary = next(h for h, r in runs.items() if r.batch == 0)
    assert runs[canary].state == HostState.FAILED
    assert "timed out" in (runs[canary].error or "")
    assert set(d.versions().values()) == {"1.0.0"}
    d.assert_fleet_clean()


def test_stage_refuses_a_package_with_unsafe_paths(deploy: Deploy, lab: LabInfo, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "x"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../../etc/graylift-evil")
    dst = Path(lab.artifact_dir) / APP / "6.6.6"
    dst.mkdir(exist_ok=True)
    shutil.copy(evil, dst / f"{APP}-6.6.6.tar.gz")
    (dst / f"{APP}-6.6.6.tar.gz.sha256").write_text(hashlib.sha256(evil.read_bytes()).hexdigest() + "\n")
    try:
        rec = deploy.release("6.6.6")
    finally:
        shutil.rmtree(dst)
    settled(rec, ReleaseState.PAUSED)
    failed = [r for r in deploy.gl.store.host_runs(rec.id) if r.state == HostState.FAILED]
    assert len(failed) == 1 and "unsafe paths" in (failed[0].error or "")
    assert set(deploy.versions().values()) == {"1.0.0"}


def test_a_dead_controller_is_shown_by_status_and_taken_over_only_by_resume(deploy: Deploy) -> None:
    proc = subprocess.Popen([*GRAYLIFT, "-c", str(deploy.config), "release", APP, "2.0.0", "--env", "prod",
                             "--wait"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def mid_batch() -> bool:
        rec = deploy.gl.store.active_release(APP, "prod")
        return rec is not None and rec.cursor >= 1 and any(
            r.step in ("take_out", "quiet", "stop", "start") for r in deploy.gl.store.host_runs(rec.id) if r.batch == 1)

    wait_until(mid_batch, 120, "a host of batch 1 mid-flow")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rid = deploy.gl.store.active_release(APP, "prod").id  # type: ignore[union-attr]
    before = deploy.gl.store.get_release(rid)
    for read_only in (("status",), ("status", str(rid)), ("history", APP, "--env", "prod"),
                      ("hosts", "list", APP, "--env", "prod")):
        shown = deploy.cli(*read_only, check=True)
        assert "taking it over" not in shown.stdout + shown.stderr
    shown = deploy.cli("status", str(rid), check=True)
    assert "controller gone since" in shown.stdout and f"graylift resume {rid}" in shown.stdout
    time.sleep(3)
    after = deploy.gl.store.get_release(rid)
    assert after.owner == before.owner and after.lease_epoch == before.lease_epoch  # nobody took it over
    done = deploy.cli("resume", str(rid), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    settled(deploy.gl.store.get_release(rid), ReleaseState.SUCCEEDED)
    assert set(deploy.versions().values()) == {"2.0.0"}
    deploy.assert_fleet_clean()
