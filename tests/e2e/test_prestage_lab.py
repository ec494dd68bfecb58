"""Pre-staging on a real 12-host lab: every host staged before the canary, peers serving each other over HTTP,
each receiver verifying the sha256, no server left behind, and a host short of disk refused by name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import graylift.wiring
from graylift.adapters.transport.peer import MARKER, ShellPeer
from graylift.core.state import HostState, ReleaseState
from graylift.lab import LabInfo
from tests.e2e.conftest import Deploy, lab_fixture, make_deploy, settled

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
lab = lab_fixture(APP, hosts=12, name=f"pst{os.getpid() % 10000}")

STRATEGY: dict[str, Any] = {"canary": {"group": "beta", "count": 1, "bake": 0, "promote": "auto"},
                            "batch": {"size": 3}, "prestage": "always",
                            "prestage_repository_share": 1,  # one download from the repository, then peers
                            "failure_budget": {"per_batch": 1, "total": 1}}


def journal(d: Deploy, rid: int, event: str) -> list[Any]:
    return [e for e in d.gl.store.journal_entries(rid) if e.step == "prestage" and e.event == event]


def peer_servers_left(info: LabInfo) -> list[str]:
    """Every process in the lab's hosts that is a pre-stage peer server."""
    left = []
    for host in info.hosts:
        pids = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if MARKER.encode() in cmdline:
                left.append(f"{host.name}:{pid}")
    return left


def in_host(info: LabInfo, name: str, script: str) -> None:
    host = next(h for h in info.hosts if h.name == name)
    subprocess.run(["nsenter", "-t", str(host.pid), "-m", "--", "sh", "-c", script], check=True)


def test_a_host_short_of_disk_is_refused_by_name(lab: LabInfo, tmp_path: Path) -> None:
    d = make_deploy(lab, APP, tmp_path, **STRATEGY)
    short = lab.hosts[4].name
    in_host(lab, short, "mkdir -p /srv/pyapp/releases && mount -t tmpfs -o size=4k tmpfs /srv/pyapp/releases")
    try:
        rec = d.release("1.0.0")
    finally:
        in_host(lab, short, "umount /srv/pyapp/releases")
    [refused] = journal(d, rec.id, "refused")
    assert refused.host == short
    message = refused.detail["error"]
    assert message.startswith(f"{short}: 4 KiB free in the deploy dir, pre-staging needs ") and "KiB" in message
    staged = {e.host for e in journal(d, rec.id, "staged")}
    assert staged == {h.name for h in lab.hosts} - {short}  # the others were not held up
    settled(rec, ReleaseState.SUCCEEDED)  # its own stage step failed the same way, within the failure budget
    states = {r.host: r.state for r in d.gl.store.host_runs(rec.id)}
    assert states[short] is not HostState.DONE
    assert peer_servers_left(lab) == []


def test_every_host_is_staged_before_the_canary_from_peers_and_a_bad_peer_is_refused(
        lab: LabInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = make_deploy(lab, APP, tmp_path, **STRATEGY)
    tampered: list[str] = []

    class Tampering(ShellPeer):
        """The first peer to serve has its archive changed after it verified it: what it serves is wrong."""

        async def serve(self, name: str, filename: str, **kwargs: Any) -> tuple[int, int]:
            if not tampered:
                tampered.append(self.host)
                await self.transport.run(f"echo tampered >> {self.root}/releases/{name}/{filename}", timeout=10)
            return await super().serve(name, filename, **kwargs)

    monkeypatch.setattr(graylift.wiring, "ShellPeer", Tampering)
    rec = d.release("2.0.0")
    settled(rec, ReleaseState.SUCCEEDED)
    everyone = {h.name for h in lab.hosts}
    entries = d.gl.store.journal_entries(rec.id)
    staged = journal(d, rec.id, "staged")
    have = {e.host for e in staged} | {e.host for e in journal(d, rec.id, "present")}
    assert have == everyone
    canary_starts = min(e.id for e in entries if e.step == "precheck" and e.event == "begin")
    assert max(e.id for e in staged) < canary_starts  # the whole fleet staged before the canary began
    sources = [e.detail["source"] for e in staged]
    assert sources.count("repository") <= 2 and len([s for s in sources if s in everyone]) >= len(staged) - 2
    # the tampered peer's bytes were refused by every receiver's sha256 check; they got it elsewhere
    [bad] = tampered
    retries = journal(d, rec.id, "retry")
    assert retries and {e.detail["source"] for e in retries} == {bad}
    assert all("sha256" in e.detail["error"] for e in retries)
    assert all(e.detail["source"] != bad for e in staged)
    assert all("reused" in e.detail for e in entries if e.step == "stage" and e.event == "done")
    assert set(d.versions().values()) == {"2.0.0"}
    # every server started was stopped, and none is left on any host
    serving = {e.host for e in journal(d, rec.id, "serving")}
    assert serving and serving == {e.host for e in journal(d, rec.id, "server_stopped")}
    assert peer_servers_left(lab) == []
    d.assert_fleet_clean()
