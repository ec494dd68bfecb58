"""A real 3-host lab: sshd hosts in network namespaces, the artifact server, HAProxy in front."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from graylift.errors import GrayliftError
from graylift.lab import LabInfo, host_exec, lab_down, lab_up, partition
from graylift.lab.load import BackgroundLoad, LoadReport

pytestmark = [
    pytest.mark.root,
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="graylift lab needs root (network namespaces); run as root"),
]

LAB = f"t{os.getpid() % 10_000_000}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    root = tmp_path_factory.mktemp("labstate")
    info = lab_up(LAB, hosts=3, apps=("pyapp", "shop"), state_root=root)
    yield info
    lab_down(LAB, state_root=root)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(url: str, status: int, text: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    seen: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        seen = http_get(url)
        if seen[0] == status and text in seen[1]:
            return seen[1]
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status} {text!r}; last: {seen}")


def sh(info: LabInfo, host: str, command: str, timeout: float = 30) -> str:
    done = host_exec(info, host, command, timeout)
    assert done.returncode == 0, f"{host}: {command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def install(info: LabInfo, host: str, app: str, version: str, ext: str) -> None:
    url = f"{info.artifact_base_url}/{app}/{version}/{app}-{version}.{ext}"
    release = f"/srv/{app}/releases/{version}"
    unpack = (f"tar -xzf /tmp/pkg -C {release}" if ext == "tar.gz"
              else f"cp /tmp/pkg {release}/{app}-{version}.war")
    sh(info, host, f"set -e; mkdir -p {release}; curl -fsS -o /tmp/pkg {url}; {unpack}; "
                   f"ln -sfn {release} /srv/{app}/current")


async def test_ssh_into_a_host_verifies_its_host_key(lab: LabInfo, tmp_path: Path) -> None:
    host = lab.hosts[0]
    async with asyncssh.connect(host.address, username="root", client_keys=[lab.client_key],
                                known_hosts=lab.known_hosts) as conn:
        result = await conn.run("hostname; cat /proc/1/comm; ls -d /srv/pyapp /srv/shop/bin", check=True)
    assert str(result.stdout).split() == [host.name, "sshd", "/srv/pyapp", "/srv/shop/bin"]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(host.address, username="root", client_keys=[lab.client_key],
                               known_hosts=str(empty))


def test_each_host_has_its_own_srv_hostname_and_pid_namespace(lab: LabInfo) -> None:
    a, b = lab.hosts[0].name, lab.hosts[1].name
    sh(lab, a, "echo mine > /srv/marker")
    assert sh(lab, a, "cat /srv/marker") == "mine\n"
    assert sh(lab, b, "ls /srv/marker || true") == ""
    pid_ns = {sh(lab, h.name, "readlink /proc/self/ns/pid") for h in lab.hosts}
    assert len(pid_ns) == 3 and os.readlink("/proc/self/ns/pid") + "\n" not in pid_ns
    assert sh(lab, a, "hostname") == f"{a}\n"
    assert sh(lab, b, "ps -e -o pid=,comm= | head -n 1").split() == ["1", "sshd"]


def test_artifact_server_serves_packages_with_their_sha256_inside_a_host(lab: LabInfo) -> None:
    host = lab.hosts[2].name
    for app, ext in (("pyapp", "tar.gz"), ("shop", "war")):
        for version in ("1.0.0", "2.0.0", "3.0.0"):
            url = f"{lab.artifact_base_url}/{app}/{version}/{app}-{version}.{ext}"
            out = sh(lab, host, f"curl -fsS -o /tmp/x {url} && sha256sum /tmp/x && curl -fsS {url}.sha256")
            got, expected = out.split()[0], out.split()[2]
            local = Path(lab.artifact_dir) / app / version / f"{app}-{version}.{ext}"
            assert got == expected == hashlib.sha256(local.read_bytes()).hexdigest()
    assert http_get(f"{lab.artifact_base_url}/pyapp/4.0.0/pyapp-4.0.0.tar.gz")[0] == 200  # root ns too


def test_haproxy_answers_503_then_routes_to_a_pyapp_started_by_hand(lab: LabInfo) -> None:
    front = lab.apps["pyapp"].frontend_url
    assert http_get(front + "/")[0] == 503
    host = lab.hosts[0].name
    install(lab, host, "pyapp", "1.0.0", "tar.gz")
    out = sh(lab, host, "sh /srv/pyapp/current/bin/start")
    assert "started" in out
    assert wait_for(front + "/", 200, "pyapp 1.0.0") == f"pyapp 1.0.0 {host}\n"
    assert sh(lab, host, "pgrep -f pyapp-server.py").strip()
    # a listening socket's Send-Q is its backlog: a burst of an LB's new connections fits (socketserver's 5 did
    # not, and the dropped SYNs' retransmits outlived HAProxy's connect timeout)
    listen = sh(lab, host, f"ss -ltnH 'sport = :{lab.apps['pyapp'].port}'").split()
    assert listen[2] == "128", listen

    report = _load_for(front + "/", seconds=1.0)
    assert report.errors == 0 and report.non_2xx == 0 and report.ok_2xx > 100, report

    assert "stopped" in sh(lab, host, "sh /srv/pyapp/current/bin/stop")
    assert "not running" in sh(lab, host, "sh /srv/pyapp/current/bin/stop")
    wait_for(front + "/", 503, "")


def test_shop_war_runs_on_the_hosts_tomcat(lab: LabInfo) -> None:
    front = lab.apps["shop"].frontend_url
    host = lab.hosts[1].name
    install(lab, host, "shop", "1.0.0", "war")
    started = time.monotonic()
    sh(lab, host, "sh /srv/shop/bin/tomcat-start /srv/shop/current")
    port = lab.apps["shop"].port
    sh(lab, host, f"until curl -fsS 127.0.0.1:{port}/health; do sleep 0.1; done", timeout=30)
    print(f"tomcat start to healthy: {time.monotonic() - started:.2f}s")
    assert wait_for(front + "/", 200, "shop 1.0.0") == f"shop 1.0.0 {host}\n"
    assert "stopped" in sh(lab, host, "sh /srv/shop/bin/tomcat-stop")
    assert sh(lab, host, "pgrep -f shop-serve[r] || true") == ""


def test_partition_cuts_a_host_off_and_heals(lab: LabInfo) -> None:
    host = lab.hosts[2]
    partition(lab, host.name)
    try:
        with pytest.raises(OSError):
            socket.create_connection((host.address, 22), timeout=1).close()
    finally:
        partition(lab, host.name, down=False)
    socket.create_connection((host.address, 22), timeout=5).close()


def test_down_leaves_nothing_behind_even_without_lab_json(tmp_path: Path) -> None:
    name = f"d{os.getpid() % 10_000_000}"
    info = lab_up(name, hosts=2, apps=("pyapp",), state_root=tmp_path)
    pids = [h.pid for h in info.hosts] + [int(Path(p).read_text()) for p in info.pidfiles.values()]
    Path(info.state_dir, "lab.json").unlink()  # as if `up` had crashed before writing it
    with pytest.raises(GrayliftError, match="not up"):
        LabInfo.load(name, tmp_path)
    lab_down(name, state_root=tmp_path)
    lab_down(name, state_root=tmp_path)  # idempotent
    assert not Path(info.state_dir).exists()
    assert not [ns for ns in os.listdir("/run/netns") if ns.startswith(f"gl-{name}-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert f"gl-{name}-" not in links
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_lab_refuses_to_run_without_root() -> None:
    code = "from graylift.lab import lab_up\ntry:\n lab_up('x')\nexcept Exception as e:\n print(e)"
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/env",
                           f"PYTHONPATH={Path(__file__).parents[2] / 'src'}", "/usr/bin/python3", "-c", code],
                          capture_output=True, text=True, check=False, cwd="/")
    assert "graylift lab needs root (network namespaces) — run it with sudo" in done.stdout, done.stderr


def _load_for(url: str, seconds: float) -> LoadReport:
    load = BackgroundLoad(url, connections=4, rate=400).start()
    time.sleep(seconds)
    return load.stop()

