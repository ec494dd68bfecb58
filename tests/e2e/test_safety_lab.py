"""The safety rules on a real lab: a brownfield fleet's first release and one-click rollback under load through
HAProxy and nginx (nginx with its servers included inside the upstream block), a failed canary and a rollback
with the artifact repository down, one broken load balancer, the preflight, and repository credentials.

Every outcome is checked from outside graylift: each host's ``current`` link and what its app answers, HAProxy's
runtime state, nginx's upstream file, Alertmanager's silences, ZooKeeper's overrides, the clients' counts.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.flow import Step
from graylift.core.state import HostState, ReleaseState
from graylift.lab import LabInfo, host_exec, partition
from graylift.lab import artifacts as lab_artifacts
from graylift.lab import services as lab_services
from graylift.lab.brownfield import install_by_script
from graylift.lab.files import nginx_traffic_entry
from graylift.lab.inspect import active_silences, haproxy_servers, nginx_down, serving_versions
from graylift.lab.inspect import fleet_problems as lab_fleet_problems
from graylift.lab.load import WrkLoad
from graylift.service import Graylift
from tests.e2e.conftest import Deploy, hook_steps, lab_fixture, settled, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
ENV = "prod"
lab = lab_fixture(APP, hosts=8, name=f"safe{os.getpid() % 10000}", nginx_layout="include-inside-upstream")
QUICK = {"canary": {"group": "beta", "count": 1, "bake": 1, "promote": "auto"}, "batch": {"size": 3}}


def deploy(info: LabInfo, tmp_path: Path, *, nginx: bool = True, edit: Callable[[dict[str, Any]], None] | None = None
           ) -> Deploy:
    """A config over the lab: HAProxy, (nginx,) ZooKeeper; Alertmanager; the quick strategy; its own database."""
    data = yaml.safe_load(Path(info.config_path).read_text())
    data["state"] = f"sqlite:///{tmp_path}/state.db"
    app = data["apps"][APP]
    if nginx:
        app["traffic"] = [*app["traffic"][:1], nginx_traffic_entry(info, APP), *app["traffic"][1:]]
    app["strategy"].update(QUICK)
    if edit is not None:
        edit(data)
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "graylift.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    gl = Graylift(config)
    gl.store.replace_hosts(APP, ENV, load_hosts_file(Path(info.hosts_file)))
    return Deploy(info, APP, config, gl)


def fleet_problems(info: LabInfo, version: str) -> list[str]:
    return lab_fleet_problems(info, APP, version)


def drive(d: Deploy, release_id: int) -> Any:
    return asyncio.run(d.gl.engine().drive(release_id))


# --- rule 9 + 12: a brownfield fleet, nginx's other layout -------------------------------------------------

def test_a_fleet_another_tool_installed_gets_a_release_and_a_one_click_rollback_under_load(
        lab: LabInfo, tmp_path: Path) -> None:
    install_by_script(lab, APP, "1.0.0")  # a plain script: absolute current link, no graylift marker
    wait_until(lambda: all(s.serving for s in haproxy_servers(lab, APP).values()), 30, "HAProxy to see the apps")
    d = deploy(lab, tmp_path)
    survey = d.cli("hosts", "survey", APP, "--env", ENV, "--version", "1.1.0", check=True).stdout
    assert survey.count("current -> releases/1.0.0") == len(lab.hosts), survey
    assert survey.count("release 1.0.0 -> 1.1.0") == len(lab.hosts), survey
    plan = d.cli("plan", APP, "1.1.0", "--env", ENV, check=True).stdout
    assert "include inside upstream" in plan, plan  # preflight names the nginx layout it found
    loads = {"haproxy": WrkLoad(lab.apps[APP].frontend_url + "/", connections=8).start(),
             "nginx": WrkLoad(lab.apps[APP].nginx_url + "/", connections=8, close=True).start()}
    try:
        time.sleep(0.5)
        released = d.cli("release", APP, "1.1.0", "--env", ENV, "--wait")
        assert released.returncode == 0, released.stdout + released.stderr
        assert f"{APP} 1.0.0 -> 1.1.0 ({ENV})" in released.stdout  # not "(none) -> 1.1.0"
        assert not fleet_problems(lab, "1.1.0")
        back = d.cli("rollback", APP, "--env", ENV, "--wait")  # no --to: the version the fleet ran
        assert back.returncode == 0, back.stdout + back.stderr
        assert f"rollback of {APP} ({ENV}) to 1.0.0" in back.stdout
        time.sleep(0.5)
    finally:
        reports = {lb: load.stop() for lb, load in loads.items()}
    for lb, report in reports.items():
        assert report.sent > 1000, (lb, report)
        assert report.non_2xx == 0 and report.errors == 0, (lb, report)
    assert fleet_problems(lab, "1.0.0") == []
    for host in lab.hosts:  # back onto the script's own release dir: nothing was downloaded for 1.0.0
        marker = host_exec(lab, host.name, f"test -e /srv/{APP}/releases/1.0.0/.graylift-sha256 && echo yes || true")
        assert marker.stdout.strip() == ""


# --- rule 5: going back never needs the repository ------------------------------------------------------

def restart_artifacts(info: LabInfo) -> None:
    pidfile = Path(info.pidfiles["artifacts"])
    port = int(info.artifact_base_url.rsplit(":", 1)[1])
    lab_artifacts.start_artifact_server(pidfile.parent, Path(info.artifact_dir), info.bridge_address, port)


def test_with_the_repository_down_a_failed_canary_reverts_and_a_rollback_completes(
        lab: LabInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = deploy(lab, tmp_path)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    settled(d.release("2.0.0"), ReleaseState.SUCCEEDED)
    rec = asyncio.run(d.gl.start_release(APP, ENV, "3.0.0", started_by="test"))  # 3.0.0 fails its health check
    stopped: list[bool] = []

    def stop_the_repository(step: Step, ctx: Any) -> None:
        if step is Step.HEALTH and not stopped:  # the canary has staged 3.0.0; the repository goes away
            lab_services.stop_pidfile(Path(lab.pidfiles["artifacts"]), timeout=5)
            lab_artifacts.reap()
            stopped.append(True)

    hook_steps(monkeypatch, stop_the_repository)
    try:
        paused = drive(d, rec.id)
        settled(paused, ReleaseState.PAUSED)
        canary = next(r for r in d.gl.store.host_runs(rec.id) if r.batch == 0)
        assert canary.state is HostState.FAILED and "health" in (canary.error or "")
        assert fleet_problems(lab, "2.0.0") == []  # the canary is back on 2.0.0, in every backend
        monkeypatch.undo()
        back = asyncio.run(d.gl.start_rollback(APP, ENV, to_version=None, started_by="test"))
        settled(drive(d, back.id), ReleaseState.ROLLED_BACK)
        again = asyncio.run(d.gl.start_rollback(APP, ENV, to_version=None, started_by="test"))
        assert again.version == "1.0.0"  # 2.0.0 is the current version; 3.0.0 is bad
        settled(drive(d, again.id), ReleaseState.SUCCEEDED)
        assert fleet_problems(lab, "1.0.0") == []
    finally:
        if stopped:
            restart_artifacts(lab)


# --- rule 10: one broken backend never keeps a host out of the others -------------------------------------

def test_a_broken_nginx_leaves_the_host_in_haproxy_and_needing_attention_for_nginx_only(
        lab: LabInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = deploy(lab, tmp_path)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    conf = Path(lab.nginx_conf)
    original = conf.read_text()

    def break_nginx(step: Step, ctx: Any) -> None:
        if step is Step.PUT_BACK and ctx.host.group == "beta" and "graylift_broken" not in conf.read_text():
            conf.write_text(original + "\ngraylift_broken_directive on;\n")  # `nginx -t` now fails

    hook_steps(monkeypatch, break_nginx)
    try:
        rec = d.release("2.0.0")
    finally:
        conf.write_text(original)
    monkeypatch.undo()
    settled(rec, ReleaseState.PAUSED)
    canary = next(r for r in d.gl.store.host_runs(rec.id) if r.batch == 0)
    assert canary.state is HostState.NEEDS_ATTENTION
    assert set(canary.attention or {}) == {f"nginx-{APP}"}, canary.attention
    assert haproxy_servers(lab, APP)[canary.host].serving  # back in the LB that works
    assert len(nginx_down(lab, APP)) == 1  # out of the broken one only
    assert serving_versions(lab, APP)[canary.host] == "2.0.0"
    assert active_silences(lab) == []  # its alerts fire
    shown = d.cli("status", str(rec.id), check=True).stdout
    assert f"nginx-{APP}" in shown and "needs_attention" in shown
    retried = d.cli("retry", str(rec.id), "--wait")  # nginx fixed: the host goes back in, the release on
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert fleet_problems(lab, "2.0.0") == []
    assert d.gl.store.host_health(APP, ENV) == {}


# --- rule 11: preflight finds every problem before touching a host --------------------------------------

def test_preflight_refuses_with_the_whole_list_before_touching_any_host(lab: LabInfo, tmp_path: Path) -> None:
    d = deploy(lab, tmp_path)
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)
    hosts = [h.name for h in lab.hosts]
    unknown_key, cut_off, no_line = hosts[2], hosts[4], hosts[5]
    known = tmp_path / "known_hosts"
    known.write_text("".join(line + "\n" for line in Path(lab.known_hosts).read_text().splitlines()
                             if not line.startswith(lab.host(unknown_key).address + " ")))

    def edit(data: dict[str, Any]) -> None:
        data["ssh"]["known_hosts"] = str(known)
        data["apps"][APP]["monitoring"][0]["url"] = "http://127.0.0.1:9"  # nothing listens there

    broken = deploy(lab, tmp_path / "broken", edit=edit)
    ghost = load_hosts_file(Path(lab.hosts_file))[0]
    from dataclasses import replace

    broken.gl.store.upsert_host(APP, ENV, replace(ghost, name="pyapp-99"))  # the CMDB has a host HAProxy lacks
    include = Path(lab.nginx_includes[APP])
    original = include.read_text()
    include.write_text("".join(line + "\n" for line in original.splitlines()
                               if f"{lab.host(no_line).address}:" not in line))
    partition(lab, cut_off, down=True)
    try:
        planned = broken.cli("plan", APP, "9.9.9", "--env", ENV)
        released = broken.cli("release", APP, "9.9.9", "--env", ENV, "--wait")
    finally:
        partition(lab, cut_off, down=False)
        include.write_text(original)
    for done in (planned, released):
        assert done.returncode == 3, done.stdout + done.stderr  # refused by the preflight
        said = done.stderr
        assert "preflight found" in said and "no host was touched" in said and "Traceback" not in said
        assert "9.9.9" in said  # the version is not in the repository
        assert f"{unknown_key}:" in said and "host key" in said.lower()
        assert f"{cut_off}:" in said
        assert "pyapp-99" in said and f"haproxy:{APP}" in said
        assert f"{no_line}" in said and f"nginx-{APP}" in said
        assert "alertmanager" in said.lower()
    assert broken.gl.store.list_releases(APP, ENV) == []
    assert fleet_problems(lab, "1.0.0") == []


# --- rule 13: repository credentials never in argv, the database or a log ---------------------------------

class AuthRepository:
    """The lab's artifacts behind basic auth; on every request it looks through every process's argv for the
    password (curl on a lab host would show it there if graylift put it on the command line)."""

    def __init__(self, info: LabInfo, user: str, password: str) -> None:
        self.hits: list[str] = []
        self.downloads = 0
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        owner = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=info.artifact_dir, **kwargs)

            def log_message(self, *args: Any) -> None:
                return None

            def _authorized(self) -> bool:
                owner.hits += owner.argv_with(password)
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="lab"')
                    self.end_headers()
                    return False
                return True

            def do_GET(self) -> None:
                if self._authorized():
                    if self.path.endswith(".tar.gz"):
                        owner.downloads += 1
                    super().do_GET()

            def do_HEAD(self) -> None:
                if self._authorized():
                    super().do_HEAD()

        self.server = ThreadingHTTPServer((info.bridge_address, 0), Handler)
        self.url = f"http://{info.bridge_address}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def argv_with(secret: str) -> list[str]:
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if secret.encode() in (proc / "cmdline").read_bytes():
                        found.append(proc.name)
                except OSError:
                    continue
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def auth_repository(lab: LabInfo) -> Iterator[AuthRepository]:
    repo = AuthRepository(lab, "deploy", "lab-repo-s3cret-pw")
    yield repo
    repo.close()


def test_repository_credentials_reach_the_hosts_on_stdin_only(lab: LabInfo, tmp_path: Path,
                                                              auth_repository: AuthRepository) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["repositories"]["lab"] = {"url": auth_repository.url + "/{app}/{version}/{app}-{version}.{ext}",
                                       "sha256_url": "{url}.sha256", "username": "deploy",
                                       "password_env": "LAB_REPO_PASSWORD"}

    settled(deploy(lab, tmp_path / "plain", nginx=False).release("1.0.0"), ReleaseState.SUCCEEDED)
    for host in lab.hosts:  # so that every host downloads 2.0.0 again, through the repository with credentials
        host_exec(lab, host.name, f"rm -rf /srv/{APP}/releases/2.0.0")
    d = deploy(lab, tmp_path, nginx=False, edit=edit)
    missing = d.cli("plan", APP, "2.0.0", "--env", ENV)
    assert missing.returncode == 2 and "LAB_REPO_PASSWORD" in missing.stderr  # a config error
    wrong = d.cli("plan", APP, "2.0.0", "--env", ENV, env={"LAB_REPO_PASSWORD": "wrong"})
    assert wrong.returncode == 3 and "401" in wrong.stderr  # the preflight refuses and "wrong" not in wrong.stderr
    done = d.cli("release", APP, "2.0.0", "--env", ENV, "--wait", env={"LAB_REPO_PASSWORD": "lab-repo-s3cret-pw"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert auth_repository.downloads == len(lab.hosts)
    assert auth_repository.hits == []  # no process (on any lab host or here) had the password in its argv
    assert b"lab-repo-s3cret-pw" not in Path(tmp_path / "state.db").read_bytes()
    for wal in tmp_path.glob("state.db*"):
        assert b"lab-repo-s3cret-pw" not in wal.read_bytes()
    assert "lab-repo-s3cret-pw" not in done.stdout + done.stderr
    assert fleet_problems_haproxy_only(lab, "2.0.0") == []
    shutil.rmtree(tmp_path / "logs", ignore_errors=True)


def fleet_problems_haproxy_only(info: LabInfo, version: str) -> list[str]:
    return [p for p in fleet_problems(info, version) if not p.startswith("nginx")]
