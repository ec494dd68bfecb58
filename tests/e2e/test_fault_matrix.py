"""The fault matrix on one real lab: a fault injected in the middle of a release, one test each.

Each test brings the fleet to 1.0.0, starts a release of 2.0.0, injects its fault at a precise point of the
canary's flow (a hook before a step) and checks the documented outcome (skip, retry, pause, roll back) in the
release record, then the fleet from OUTSIDE graylift: each host's ``current`` link and what its app answers,
HAProxy's runtime state, the nginx upstream file, ZooKeeper's overrides, etcd's keys and Alertmanager's
silences. No host may be out of service unless its record says ``needs_attention`` with the reason. The table
of outcomes is in docs/reliability.md; faults already held elsewhere (start hangs, health never passes,
checksum mismatch, nginx reload failing) are listed there with their tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import graylift.engine.loop as loop_module
from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.flow import Step
from graylift.core.state import HostState, ReleaseState
from graylift.lab import LabInfo, host_exec, partition
from graylift.lab import services as lab_services
from graylift.lab.files import nginx_traffic_entry
from graylift.lab.inspect import etcd_key, fleet_problems, haproxy_servers, serving_versions
from graylift.lab.lifecycle import restart_host
from graylift.service import Graylift
from graylift.store import HostRunRecord, ReleaseRecord
from tests.e2e.conftest import Deploy, hook_steps, lab_fixture, settled, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
ENV = "prod"
lab = lab_fixture(APP, hosts=4, name=f"flt{os.getpid() % 10000}")
STRATEGY = {"canary": {"group": "beta", "count": 1, "bake": 1, "promote": "auto"}, "batch": {"size": 1}}
CANARY = "pyapp-01"


@pytest.fixture(scope="module")
def etcd(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_services.Service]:
    """A real etcd beside the lab, every host registered under /services/pyapp/<address>:<port>."""
    service = lab_services.start_etcd(tmp_path_factory.mktemp("etcd"), lab_services.free_port())
    lab_services.etcd_register(int(service.port or 0), {etcd_key(lab, APP, h.name): '{"weight": 100}'
                                                        for h in lab.hosts})
    yield service
    lab_services.stop_service(service)


@pytest.fixture
def d(lab: LabInfo, etcd: lab_services.Service, tmp_path: Path) -> Deploy:
    """HAProxy, nginx, ZooKeeper and etcd; Alertmanager; a fresh database; the whole fleet on 1.0.0, clean."""
    data = yaml.safe_load(Path(lab.config_path).read_text())
    data["state"] = f"sqlite:///{tmp_path}/state.db"
    data["ssh"].update({"connect_timeout": 3, "command_timeout": 15})
    app = data["apps"][APP]
    app["traffic"] = [*app["traffic"][:1], nginx_traffic_entry(lab, APP), *app["traffic"][1:],
                      {"type": "etcd", "url": f"http://127.0.0.1:{etcd.port}", "service": APP,
                       "port": lab.apps[APP].port, "timeout": 3}]
    app["strategy"].update(STRATEGY)
    app["commands"]["timeout"] = 6
    config = tmp_path / "graylift.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    gl = Graylift(config)
    gl.store.replace_hosts(APP, ENV, load_hosts_file(Path(lab.hosts_file)))
    deploy = Deploy(lab, APP, config, gl)
    settled(deploy.release("1.0.0"), ReleaseState.SUCCEEDED)
    assert outside(deploy, "1.0.0") == []
    return deploy


def outside(d: Deploy, version: str | dict[str, str | None], exempt: tuple[str, ...] = ()) -> list[str]:
    """Every problem seen from outside graylift, etcd included (``exempt``: hosts recorded needs_attention)."""
    etcd_url = next(t["url"] for t in yaml.safe_load(d.config.read_text())["apps"][APP]["traffic"]
                    if t["type"] == "etcd")
    return fleet_problems(d.info, APP, version, etcd_url=etcd_url, exempt=exempt)


def runs(d: Deploy, rec: ReleaseRecord) -> dict[str, HostRunRecord]:
    return {r.host: r for r in d.gl.store.host_runs(rec.id)}


def attention(d: Deploy, rec: ReleaseRecord) -> tuple[str, ...]:
    """Hosts the record leaves needing attention; each must say why."""
    stuck = tuple(h for h, r in runs(d, rec).items() if r.state is HostState.NEEDS_ATTENTION)
    for host in stuck:
        assert runs(d, rec)[host].error, f"{host} needs attention without a reason"
    return stuck


def start(d: Deploy, version: str = "2.0.0") -> ReleaseRecord:
    return asyncio.run(d.gl.start_release(APP, ENV, version, started_by="test"))


def drive(d: Deploy, rec: ReleaseRecord) -> ReleaseRecord:
    return asyncio.run(d.gl.engine().drive(rec.id))


def once(step: Step, host: str, fault: Any) -> Any:
    """A step hook that injects ``fault`` once, just before ``host`` runs ``step``."""
    fired: list[bool] = []

    def before(s: Step, ctx: Any) -> None:
        if s is step and ctx.host.name == host and not fired:
            fired.append(True)
            fault()

    return before


def retried_to_the_end(d: Deploy, rec: ReleaseRecord) -> None:
    done = d.cli("retry", str(rec.id), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    settled(d.gl.store.get_release(rec.id), ReleaseState.SUCCEEDED)
    assert outside(d, "2.0.0") == []


# --- hosts ----------------------------------------------------------------------------------------------

def test_a_network_cut_in_the_middle_of_a_step_leaves_the_host_needing_attention_then_retry_finishes(
        d: Deploy, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = start(d)
    hook_steps(monkeypatch, once(Step.STOP, CANARY, lambda: partition(lab, CANARY, down=True)))
    try:
        paused = drive(d, rec)
    finally:
        partition(lab, CANARY, down=False)
    monkeypatch.undo()
    settled(paused, ReleaseState.PAUSED)
    assert attention(d, paused) == (CANARY,)
    assert "stop" in (runs(d, paused)[CANARY].error or "")
    assert outside(d, "1.0.0", exempt=(CANARY,)) == []  # the others untouched and serving
    assert not haproxy_servers(lab, APP)[CANARY].serving  # it stays out, as its record says
    retried_to_the_end(d, paused)


def test_sshd_killed_takes_the_host_down_and_the_record_says_so(
        d: Deploy, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = start(d)

    def kill_pid_one() -> None:
        os.kill(lab.host(CANARY).pid, 9)  # the host's PID 1 (sshd): the whole host goes, its app too

    hook_steps(monkeypatch, once(Step.STOP, CANARY, kill_pid_one))  # as the restart goes out (one command)
    try:
        paused = drive(d, rec)
    finally:
        monkeypatch.undo()
        restart_host(lab, CANARY)  # the VM comes back, its app not running
    settled(paused, ReleaseState.PAUSED)
    assert attention(d, paused) == (CANARY,)
    assert "stop" in (runs(d, paused)[CANARY].error or "")
    assert outside(d, "1.0.0", exempt=(CANARY,)) == []
    assert not haproxy_servers(lab, APP)[CANARY].serving
    retry = d.cli("retry", str(paused.id), "--wait")  # its app is not running: the retry's pre-check skips it
    assert retry.returncode != 0 and "unhealthy before release" in retry.stdout, retry.stdout + retry.stderr
    assert outside(d, "1.0.0", exempt=(CANARY,)) == []
    host_exec(lab, CANARY, f"rm -f /srv/{APP}/{APP}.pid; sh /srv/{APP}/current/bin/start")  # the operator's fix
    wait_until(lambda: serving_versions(lab, APP)[CANARY] == "1.0.0", 30, "the app to answer again")
    retried_to_the_end(d, paused)


def test_the_app_crashing_during_the_bake_rolls_the_canary_back(
        d: Deploy, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = start(d)
    real_bake = loop_module._Drive.bake
    crashed: list[bool] = []

    async def bake(self: Any, current: ReleaseRecord) -> None:
        if not crashed:
            crashed.append(True)
            host_exec(lab, CANARY, "pkill -9 -f 'pyapp-serve[r]'")
        await real_bake(self, current)

    monkeypatch.setattr(loop_module._Drive, "bake", bake)
    done = drive(d, rec)
    monkeypatch.undo()
    assert crashed
    settled(done, ReleaseState.ROLLED_BACK)
    assert "bake" in (done.message or "")
    assert attention(d, done) == ()
    assert outside(d, "1.0.0") == []
    assert "2.0.0" in d.gl.store.bad_versions(APP, ENV)


def test_a_full_disk_while_staging_fails_the_canary_untouched_and_pauses(
        d: Deploy, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    releases = f"/srv/{APP}/releases"

    def fill_disk() -> None:  # a small tmpfs over releases/, holding what was there, then filled up
        host_exec(lab, CANARY, f"set -e; cp -a {releases} /tmp/keep; mount -t tmpfs -o size=4m tmpfs {releases}; "
                  f"cp -a /tmp/keep/. {releases}/; rm -rf /tmp/keep; "
                  f"dd if=/dev/zero of={releases}/.fill bs=4k 2>/dev/null || true")

    host_exec(lab, CANARY, f"rm -rf {releases}/2.0.0")  # so that it must be downloaded again
    rec = start(d)
    hook_steps(monkeypatch, once(Step.STAGE, CANARY, fill_disk))
    try:
        paused = drive(d, rec)
    finally:
        monkeypatch.undo()
        host_exec(lab, CANARY, f"umount -l {releases}")
    settled(paused, ReleaseState.PAUSED)
    canary = runs(d, paused)[CANARY]
    assert canary.state is HostState.FAILED and "stage" in (canary.error or ""), canary
    steps = {e.step for e in d.gl.store.journal_entries(paused.id, CANARY)}
    assert not steps & {"mute", "take_out", "stop"}
    assert outside(d, "1.0.0") == []
    retried_to_the_end(d, paused)


# --- the repository -------------------------------------------------------------------------------------

def test_a_package_gone_from_the_repository_fails_the_canary_untouched_and_pauses(
        d: Deploy, lab: LabInfo) -> None:
    src = Path(lab.artifact_dir) / APP / "2.0.0"
    dst = Path(lab.artifact_dir) / APP / "7.0.0"
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.rename(dst / f.name.replace("2.0.0", "7.0.0"))
    try:
        rec = start(d, "7.0.0")  # the preflight finds it and pins its sha256
        (dst / f"{APP}-7.0.0.tar.gz").unlink()  # then it is gone: a 404
        paused = drive(d, rec)
    finally:
        shutil.rmtree(dst)
    settled(paused, ReleaseState.PAUSED)
    canary = runs(d, paused)[CANARY]
    assert canary.state is HostState.FAILED and "404" in (canary.error or ""), canary
    assert outside(d, "1.0.0") == []


class SlowRepository:
    """The lab's artifacts served at ``rate`` bytes per second (a repository on a slow link)."""

    def __init__(self, info: LabInfo, rate: int) -> None:
        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=info.artifact_dir, **kwargs)

            def log_message(self, *args: Any) -> None:
                return None

            def copyfile(self, source: Any, outputfile: Any) -> None:
                while chunk := source.read(max(1, rate // 10)):
                    outputfile.write(chunk)
                    time.sleep(0.1)

        self.server = ThreadingHTTPServer((info.bridge_address, 0), Handler)
        self.url = f"http://{info.bridge_address}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_slow_repository_slows_staging_but_never_keeps_a_host_out_of_traffic(
        d: Deploy, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    size = (Path(lab.artifact_dir) / APP / "2.0.0" / f"{APP}-2.0.0.tar.gz").stat().st_size
    for host in lab.hosts:  # 1.1.0 is downloaded by every host, through the slow repository
        host_exec(lab, host.name, f"rm -rf /srv/{APP}/releases/1.1.0")
    slow = SlowRepository(lab, rate=max(1, size // 2))  # about 2 s per download
    try:
        data = yaml.safe_load(d.config.read_text())
        data["repositories"]["lab"]["url"] = slow.url + "/{app}/{version}/{app}-{version}.{ext}"
        d.config.write_text(yaml.safe_dump(data, sort_keys=False))
        gl = Graylift(d.config)
        out_while_staging: list[str] = []

        def look(step: Step, ctx: Any) -> None:
            if step is Step.STAGE:  # every host serves while it (and the others) download
                out_while_staging.extend(n for n, s in haproxy_servers(lab, APP).items() if not s.serving)

        hook_steps(monkeypatch, look)
        rec = asyncio.run(gl.start_release(APP, ENV, "1.1.0", started_by="test"))
        done = asyncio.run(gl.engine().drive(rec.id))
    finally:
        slow.close()
    settled(done, ReleaseState.SUCCEEDED)
    assert out_while_staging == []
    staged = [e.detail.get("seconds", 0) for e in gl.store.journal_entries(rec.id)
              if e.step == "stage" and e.event == "done"]
    assert len(staged) == len(lab.hosts) and min(staged) >= 1.0, staged
    assert outside(d, "1.1.0") == []


# --- backends -------------------------------------------------------------------------------------------

def test_the_haproxy_stats_socket_gone_at_take_out_keeps_the_canary_serving(
        d: Deploy, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    sock, moved = Path(lab.haproxy_socket), Path(lab.haproxy_socket + ".gone")
    rec = start(d)
    hook_steps(monkeypatch, once(Step.TAKE_OUT, CANARY, lambda: sock.rename(moved)))
    try:
        paused = drive(d, rec)
    finally:
        monkeypatch.undo()
        if moved.exists():
            moved.rename(sock)
    settled(paused, ReleaseState.PAUSED)
    assert attention(d, paused) == (CANARY,)  # HAProxy could not be asked whether it is back
    assert set(runs(d, paused)[CANARY].attention or {}) == {f"haproxy:{APP}"}, runs(d, paused)[CANARY]
    assert outside(d, "1.0.0", exempt=(CANARY,)) == []
    assert haproxy_servers(lab, APP)[CANARY].serving  # it was never taken out of HAProxy
    retried_to_the_end(d, paused)


def stop_and_restart(lab: LabInfo, name: str) -> Any:
    """Stop a lab service by its pidfile; return what starts it again on the same port and data."""
    pidfile = Path(lab.pidfiles[name])
    lab_services.stop_pidfile(pidfile, timeout=10)

    def again() -> None:
        if name == "zookeeper":
            lab_services.start_zookeeper(pidfile.parent, int(lab.zookeeper_address.rsplit(":", 1)[1]))
        else:
            lab_services.start_alertmanager(pidfile.parent, int(lab.alertmanager_url.rsplit(":", 1)[1]))

    return again


def only_down_backend_needs_attention(d: Deploy, lab: LabInfo, paused: ReleaseRecord, backend: str) -> None:
    """The release paused with the canary needing attention for ``backend`` alone, serving everywhere else and
    in HAProxy, the rest of the fleet clean; then ``retry`` finishes the release."""
    settled(paused, ReleaseState.PAUSED)
    assert attention(d, paused) == (CANARY,)
    canary = runs(d, paused)[CANARY]
    assert [b.split(":")[0] for b in canary.attention or {}] == [backend], canary  # only the backend that is down
    assert outside(d, "1.0.0", exempt=(CANARY,)) == []
    assert haproxy_servers(lab, APP)[CANARY].serving  # back in the load balancers (or never out): it serves
    retried_to_the_end(d, paused)


def test_zookeeper_down_at_take_out_leaves_the_canary_needing_attention_then_retry_finishes(
        d: Deploy, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    restart: list[Any] = []
    rec = start(d)
    hook_steps(monkeypatch, once(Step.TAKE_OUT, CANARY, lambda: restart.append(stop_and_restart(lab, "zookeeper"))))
    try:
        paused = drive(d, rec)
    finally:
        monkeypatch.undo()
        for again in restart:
            again()
    only_down_backend_needs_attention(d, lab, paused, "zookeeper")


def test_etcd_down_at_take_out_leaves_the_canary_needing_attention_then_retry_finishes(
        d: Deploy, lab: LabInfo, etcd: lab_services.Service, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = start(d)
    stopped: list[bool] = []

    def stop_etcd() -> None:
        lab_services.stop_service(etcd)
        stopped.append(True)

    hook_steps(monkeypatch, once(Step.TAKE_OUT, CANARY, stop_etcd))
    try:
        paused = drive(d, rec)
    finally:
        monkeypatch.undo()
        if stopped:
            restarted = lab_services.start_etcd(etcd.workdir, int(etcd.port or 0))
            etcd.pid, etcd.pidfile = restarted.pid, restarted.pidfile
    only_down_backend_needs_attention(d, lab, paused, "etcd")


def test_alertmanager_down_at_mute_leaves_the_canary_serving_and_pauses(
        d: Deploy, lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    restart: list[Any] = []
    rec = start(d)
    hook_steps(monkeypatch, once(Step.MUTE, CANARY, lambda: restart.append(stop_and_restart(lab, "alertmanager"))))
    try:
        paused = drive(d, rec)
    finally:
        monkeypatch.undo()
        for again in restart:
            again()
    only_down_backend_needs_attention(d, lab, paused, "alertmanager")
