"""The lab's real nginx next to HAProxy: routing, NginxSwitch edits + reload, a rogue nginx, a Tomcat app."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from graylift.adapters.observer import connections_from, verify_no_new_traffic
from graylift.adapters.traffic.nginx import NginxSwitch, NginxTraffic
from graylift.adapters.transport.local import LocalTransport
from graylift.core.model import Host
from graylift.errors import GrayliftError, TrafficError
from graylift.lab import LabInfo, files, host_exec, lab_down, lab_up
from graylift.lab.fleet import nsenter_argv
from graylift.lab.load import BackgroundLoad
from graylift.ports import CommandResult, Transport

pytestmark = [
    pytest.mark.root,
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="graylift lab needs root (network namespaces); run as root"),
]

LAB = f"n{os.getpid() % 10_000_000}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    root = tmp_path_factory.mktemp("nginxlab")
    info = lab_up(LAB, hosts=3, apps=("pyapp",), state_root=root, lbs=("haproxy", "nginx"))
    try:
        for host in info.hosts[:2]:
            start_pyapp(info, host.name)
        yield info
    finally:
        lab_down(LAB, state_root=root)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sh(info: LabInfo, host: str, command: str, timeout: float = 60) -> str:
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


def start_pyapp(info: LabInfo, host: str) -> None:
    install(info, host, "pyapp", "1.0.0", "tar.gz")
    assert "started" in sh(info, host, "sh /srv/pyapp/current/bin/start")
    sh(info, host, "until curl -fsS 127.0.0.1:8080/health; do sleep 0.05; done", timeout=20)


def who_answers(url: str, count: int, *, failures: bool = False) -> collections.Counter[str]:
    """host name (or ``"502"`` when ``failures`` are expected) -> how many of ``count`` requests it answered."""
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        status, body = http_get(url + "/")
        if failures and status == 502:
            seen["502"] += 1
            continue
        assert status == 200, (status, body)
        seen[body.split()[-1]] += 1
    return seen


def nginx_pids(marker: str) -> list[int]:
    """PIDs of the nginx masters whose command line names ``marker`` (a lab's dir) and of their workers."""
    procs: dict[int, tuple[int, str]] = {}  # pid -> (session id, command line)
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "exe") == "/usr/sbin/nginx":
                session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
                procs[int(entry.name)] = (session, (entry / "cmdline").read_text())
        except OSError:
            continue
    masters = {pid for pid, (_, cmdline) in procs.items() if cmdline.startswith("nginx: master") and marker in cmdline}
    return sorted(pid for pid, (session, _) in procs.items() if pid in masters or session in masters)


def bridge_addresses(info: LabInfo) -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", info.bridge], capture_output=True, text=True,
                         check=False).stdout
    return re.findall(r"inet (\S+)", out)


class HostTransport:
    """A graylift Transport into a lab host (its namespaces), for the traffic observer."""

    def __init__(self, info: LabInfo, host_name: str) -> None:
        host = info.host(host_name)
        self.host = Host(name=host.name, address=host.address)
        self._local = LocalTransport(self.host)
        self._pid = host.pid

    async def run(self, command: str, *, timeout: float, check: bool = True) -> CommandResult:
        return await self._local.run(shlex.join(nsenter_argv(self._pid, command)), timeout=timeout, check=check)

    async def put(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def switch_for(info: LabInfo, app: str) -> NginxSwitch:
    """A NginxSwitch built from the lab's own ``type: nginx`` entry (the controller is the LB host)."""
    entry = files.nginx_traffic_entry(info, app)
    assert entry["lb_host"] is None

    async def local() -> Transport:
        return LocalTransport(Host(name="controller", address="127.0.0.1"))

    return NginxSwitch(NginxTraffic.model_validate(entry), transport_factory=local)


def lab_host(info: LabInfo, index: int) -> Host:
    host = info.hosts[index]
    return Host(name=host.name, address=host.address)


def test_nginx_is_its_own_master_with_everything_in_the_lab_dir(lab: LabInfo) -> None:
    conf = Path(lab.nginx_conf)
    pid = int(Path(lab.nginx_pidfile).read_text())
    assert conf.parent == Path(lab.state_dir) / "services" / "nginx"
    assert Path(lab.pidfiles["nginx"]) == Path(lab.nginx_pidfile)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: master process")
    dump = subprocess.run(["/usr/sbin/nginx", "-e", str(conf.parent / "error.log"), "-T", "-c", str(conf)],
                          capture_output=True, text=True, check=True).stdout
    read = set(re.findall(r"^# configuration file (\S+):$", dump, re.MULTILINE))
    assert read == {str(conf), lab.nginx_includes["pyapp"]}  # nothing from /etc/nginx
    assert (conf.parent / "error.log").exists()
    include = Path(lab.nginx_includes["pyapp"]).read_text()
    for host in lab.hosts:
        assert f"    server {host.address}:8080 max_fails=0;\n" in include
    assert "upstream pyapp_upstream {" in include and "keepalive 16;" in include
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    nginx_ports = {line.split()[3] for line in listening.splitlines() if f"pid={pid}," in line}
    assert nginx_ports == {lab.apps["pyapp"].nginx_url.removeprefix("http://")}  # no port 80


def test_written_config_names_both_load_balancers(lab: LabInfo) -> None:
    config = yaml.safe_load(Path(lab.config_path).read_text())
    traffic = config["apps"]["pyapp"]["traffic"]
    assert [t["type"] for t in traffic] == ["haproxy", "nginx", "zookeeper"]
    assert traffic[1] == files.nginx_traffic_entry(lab, "pyapp")
    assert traffic[1] | {"include": "-", "nginx_conf": "-"} == {
        "type": "nginx", "name": "nginx-pyapp", "include": "-", "upstream": "pyapp_upstream", "port": 8080,
        "lb_host": None, "nginx_bin": "/usr/sbin/nginx", "nginx_conf": "-", "reload_settle": 0.5}
    # and graylift itself accepts that file, the nginx entry included
    from graylift.config import load_config

    loaded = load_config(Path(lab.config_path)).app_for_env("pyapp", "prod")
    assert [t.type for t in loaded.traffic] == ["haproxy", "nginx", "zookeeper"]


def test_nginx_and_haproxy_route_to_the_hand_started_apps(lab: LabInfo) -> None:
    app = lab.apps["pyapp"]
    started = {lab.hosts[0].name, lab.hosts[1].name}
    # The third host runs no app: nginx (no retries, max_fails=0) answers its share with 502 ...
    via_nginx = who_answers(app.nginx_url, 30, failures=True)
    assert set(via_nginx) == started | {"502"} and 5 <= via_nginx["502"] <= 15, via_nginx
    # ... while HAProxy's health checks have taken it out (and put the other two in, 500 ms apart).
    deadline = time.monotonic() + 10
    seen: set[str] = set()
    while seen != started and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = {body.split()[-1] for status, body in (http_get(app.frontend_url + "/") for _ in range(6))
                if status == 200}
    assert set(who_answers(app.frontend_url, 30)) == started


async def test_nginx_switch_edit_and_reload_keep_traffic_off_the_host(lab: LabInfo) -> None:
    url = lab.apps["pyapp"].nginx_url
    include = Path(lab.nginx_includes["pyapp"])
    first, second = lab_host(lab, 0), lab_host(lab, 1)
    # the third host runs nothing: mark it down first, so every request below has a live upstream
    switch = switch_for(lab, "pyapp")
    try:
        await switch.take_out(lab_host(lab, 2))
        await switch.take_out(first)
        assert await switch.is_out(first) and await switch.is_in(second)
        assert f"server {first.address}:8080 max_fails=0 down;" in include.read_text()
        assert set(who_answers(url, 30)) == {second.name}
        with BackgroundLoad(url + "/", connections=4, rate=400) as load:
            time.sleep(1.0)
            report = load.stop()
        assert report.ok_2xx > 100 and report.non_2xx == 0 and report.errors == 0, report

        await switch.put_back(first)
        assert await switch.is_in(first)
        assert set(who_answers(url, 30)) == {first.name, second.name}
    finally:
        await switch.put_back(lab_host(lab, 2))
        await switch.close()


async def test_rogue_nginx_sends_from_its_own_address_and_the_observer_names_it(lab: LabInfo) -> None:
    host = lab.hosts[0]
    url, stop = files.start_rogue_nginx(lab, "pyapp")
    rogue = files.rogue_address(lab)
    try:
        assert f"{rogue}/32" in bridge_addresses(lab)
        assert rogue not in {h.address for h in lab.hosts} and rogue != lab.bridge_address
        assert "pyapp 1.0.0" in http_get(url + "/")[1]
        with pytest.raises(GrayliftError, match="already runs"):
            files.start_rogue_nginx(lab, "pyapp")

        transport = HostTransport(lab, host.name)
        with BackgroundLoad(url + "/", connections=2, rate=100):
            time.sleep(0.3)
            peers = await connections_from(transport, 8080)
            with pytest.raises(TrafficError, match=re.escape(rogue)) as caught:
                # graylift's own nginx (the bridge address) is allowed; the rogue one is not
                await verify_no_new_traffic(transport, 8080, window=1.0, allowed={lab.bridge_address})
        assert rogue in peers, peers
        assert lab.bridge_address not in str(caught.value)
    finally:
        stop()
    stop()  # idempotent
    assert bridge_addresses(lab) == [f"{lab.bridge_address}/20"]
    assert not (Path(lab.state_dir) / "services" / "nginx-rogue-pyapp").exists()
    assert _refused(url)


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/", timeout=2)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return True
    return False


def test_lab_up_rejects_an_unknown_load_balancer(tmp_path: Path) -> None:
    with pytest.raises(GrayliftError, match=r"unknown lab load balancer.*choose one or more of haproxy, nginx"):
        lab_up("x", hosts=1, state_root=tmp_path, lbs=("envoy",))


def test_down_stops_nginx_and_a_forgotten_rogue_and_drops_its_address(tmp_path: Path) -> None:
    name = f"m{os.getpid() % 10_000_000}"
    try:
        info = lab_up(name, hosts=1, apps=("pyapp",), state_root=tmp_path)
        config = yaml.safe_load(Path(info.config_path).read_text())
        assert [t["type"] for t in config["apps"]["pyapp"]["traffic"]] == ["haproxy", "zookeeper"]  # default
        files.start_rogue_nginx(info, "pyapp")  # never stopped by hand
        assert len(nginx_pids(info.state_dir)) == 4  # two masters, one worker each
        assert len(bridge_addresses(info)) == 2
    finally:
        lab_down(name, state_root=tmp_path)
    assert nginx_pids(info.state_dir) == []
    done = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    assert files.rogue_address(info) not in done and info.bridge_address not in done


async def take_out_all_but(info: LabInfo, keep: int) -> bool:
    """Mark every host but ``keep`` down in the app's nginx include, concurrently (edits take turns on the
    include's lock); True when ``keep`` is still in."""
    switch = switch_for(info, next(iter(info.apps)))
    try:
        others = [lab_host(info, index) for index in range(len(info.hosts)) if index != keep]
        await asyncio.gather(*(switch.take_out(host) for host in others))
        return all([await switch.is_out(host) for host in others]) and await switch.is_in(lab_host(info, keep))
    finally:
        await switch.close()


@pytest.mark.slow
def test_shop_lab_of_six_hosts_nginx_and_haproxy_both_route_to_a_hand_started_tomcat(tmp_path: Path) -> None:
    name = f"s{os.getpid() % 10_000_000}"
    try:
        info = lab_up(name, hosts=6, apps=("shop",), state_root=tmp_path, lbs=("haproxy", "nginx"))
        config = yaml.safe_load(Path(info.config_path).read_text())
        assert [t["type"] for t in config["apps"]["shop"]["traffic"]] == ["haproxy", "nginx", "zookeeper"]
        shop = info.apps["shop"]
        assert shop.port == 8080 and len(info.hosts) == 6
        host = info.hosts[3].name
        install(info, host, "shop", "1.0.0", "war")
        started = time.monotonic()
        sh(info, host, "sh /srv/shop/bin/tomcat-start /srv/shop/current")
        sh(info, host, "until curl -fsS 127.0.0.1:8080/health; do sleep 0.1; done", timeout=60)
        print(f"tomcat start to healthy: {time.monotonic() - started:.2f}s")

        assert asyncio.run(take_out_all_but(info, 3))  # the five hosts without Tomcat go down in nginx
        assert who_answers(shop.nginx_url, 20) == {host: 20}
        deadline = time.monotonic() + 10
        while http_get(shop.frontend_url + "/")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert who_answers(shop.frontend_url, 20) == {host: 20}  # HAProxy's checks found the one live Tomcat
        assert http_get(shop.nginx_url + "/")[1] == f"shop 1.0.0 {host}\n"
        assert "stopped" in sh(info, host, "sh /srv/shop/bin/tomcat-stop")
    finally:
        lab_down(name, state_root=tmp_path)
