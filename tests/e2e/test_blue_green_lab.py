"""Blue-green on a real lab, judged by clients: wrk through HAProxy (no retries) and nginx (no
proxy_next_upstream) while graylift releases onto the idle group and switches to it, and then, by
`graylift rollback`, switches back.

Six hosts: pyapp-01..03 blue, pyapp-04..06 green, all first on 1.0.0 (a rolling install); a first blue-green
release of 1.0.0 (no load yet) makes the fleet blue-green: green is already on 1.0.0, so it only switches, and
blue goes idle, out of traffic. Then, under load: the release of 2.0.0 goes to blue (the idle group) and the
switch puts blue into HAProxy, nginx and ZooKeeper, then takes green out. In the rollback window `graylift
rollback pyapp --env prod` switches back: green's processes are the very ones that ran before (same PIDs and
start times), no host is restarted, and no request fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.bluegreen import BlueGreen
from graylift.core.state import ReleaseState
from graylift.lab import LabInfo, lab_down, lab_up
from graylift.lab.files import ZOOKEEPER_SERVICES
from graylift.lab.inspect import app_pids, haproxy_servers, nginx_down, zookeeper_overrides
from graylift.lab.load import LoadReport, WrkLoad
from graylift.lab.zero_downtime import ENV, install, open_graylift
from graylift.store import ReleaseRecord
from tests.e2e.conftest import GRAYLIFT, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root; run the tests as root")]

APP, HOSTS = "pyapp", 6
STRATEGY = {"kind": "blue_green", "blue_green": {"groups": ["blue", "green"], "rollback_window": "10m"}}


def group_of(name: str) -> str:
    return "blue" if int(name.rsplit("-", 1)[1]) <= HOSTS // 2 else "green"


def answers(url: str, tries: int = 30) -> set[str]:
    """The versions the LB's clients get from /health."""
    seen = set()
    for _ in range(tries):
        with urllib.request.urlopen(url + "/health", timeout=5) as resp:
            seen.add(resp.read().decode().strip().removeprefix("ok ").strip())
    return seen


def in_traffic(info: LabInfo) -> dict[str, set[str]]:
    """Per backend, the hosts that take traffic, read from HAProxy, nginx's upstream file and ZooKeeper."""
    servers = haproxy_servers(info, APP)
    down = " ".join(nginx_down(info, APP))
    disabled = " ".join(zookeeper_overrides(info, ZOOKEEPER_SERVICES[APP]))
    return {"haproxy": {h.name for h in info.hosts if servers[h.name].serving},
            "nginx": {h.name for h in info.hosts if f"{h.address}:" not in down},
            "zookeeper": {h.name for h in info.hosts if f"{h.address}:" not in disabled}}


def lb_logs(info: LabInfo) -> str:
    """HAProxy's log (requests that did not end well) and nginx's error log, for a failure's message."""
    parts = []
    for service, log in (("haproxy", "haproxy.log"), ("nginx", "error.log")):
        path = Path(info.pidfiles[service]).with_name(log)
        if path.exists():
            parts.append(f"--- {service} {log}\n" + "\n".join(path.read_text().splitlines()[-40:]))
    return "\n".join(parts)


def failed(loads: dict[str, LoadReport]) -> int:
    return sum(r.non_2xx + r.errors for r in loads.values())


def test_blue_green_switch_and_switch_back_under_load_drop_no_request(tmp_path: Path) -> None:
    name = f"bg{os.getpid() % 10000}"
    work = tmp_path / "work"
    lab_down(name, state_root=tmp_path)
    info = lab_up(name, hosts=HOSTS, apps=(APP,), state_root=tmp_path)
    try:
        install(info, work, APP, "1.0.0", {})
        hosts = [dataclasses.replace(h, group=group_of(h.name)) for h in load_hosts_file(Path(info.hosts_file))]
        gl = open_graylift(info, APP, work, graceful=True, strategy=STRATEGY | {"blue_green": {"rollback_window": 0}})
        gl.store.replace_hosts(APP, ENV, hosts)
        first = asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="blue-green-lab"))
        first = asyncio.run(gl.engine().drive(first.id))
        assert first.state is ReleaseState.SUCCEEDED, first.message
        gl.close()
        assert in_traffic(info)["haproxy"] == {h.name for h in hosts if h.group == "green"}  # blue is idle now
        gl = open_graylift(info, APP, work, graceful=True, strategy=STRATEGY)
        gl.store.replace_hosts(APP, ENV, hosts)
        # the old group serves, the new one is idle: the release goes to blue, the switch back to green
        old = {h.name for h in hosts if h.group == "green"}
        new = {h.name for h in hosts if h.group == "blue"}
        pids_old = {h: p for h, p in app_pids(info, "pyapp-server").items() if h in old}
        assert all(pids_old.values()), pids_old

        lab_app = info.apps[APP]
        urls = {"haproxy": (lab_app.frontend_url, False), "nginx": (lab_app.nginx_url, True)}
        loads = {lb: WrkLoad(url + "/", connections=16, close=close).start() for lb, (url, close) in urls.items()}
        time.sleep(1.0)
        rec = asyncio.run(gl.start_release(APP, ENV, "2.0.0", started_by="blue-green-lab"))
        result: list[ReleaseRecord] = []
        driver = threading.Thread(target=lambda: result.append(asyncio.run(gl.engine().drive(rec.id))))
        driver.start()
        wait_until(lambda: gl.store.get_release(rec.id).state not in (ReleaseState.PENDING, ReleaseState.RUNNING),
                   300, "the switch")
        time.sleep(1.0)
        forward = {lb: load.stop() for lb, load in loads.items()}
        during = gl.store.get_release(rec.id)
        assert during.state is ReleaseState.BAKING, during.message  # the rollback window
        assert BlueGreen.of(during.plan).serving == "blue"
        assert in_traffic(info) == {"haproxy": new, "nginx": new, "zookeeper": new}
        assert answers(lab_app.frontend_url) == {"2.0.0"} and answers(lab_app.nginx_url) == {"2.0.0"}
        after_switch = app_pids(info, "pyapp-server")
        assert {h: after_switch[h] for h in old} == pids_old  # the old group kept running, out of traffic

        loads = {lb: WrkLoad(url + "/", connections=16, close=close).start() for lb, (url, close) in urls.items()}
        time.sleep(1.0)
        started = time.monotonic()
        cli = subprocess.run([*GRAYLIFT, "-c", str(work / "graceful.yaml"), "rollback", APP,
                                            "--env", ENV], capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        cli_seconds = time.monotonic() - started
        driver.join(timeout=120)
        switch_back = time.monotonic() - started
        time.sleep(1.0)
        backward = {lb: load.stop() for lb, load in loads.items()}
        final = result[0]
        traffic = in_traffic(info)
        answered = answers(lab_app.frontend_url), answers(lab_app.nginx_url)
        pids_after = app_pids(info, "pyapp-server")
        runs = gl.store.host_runs(rec.id)
        journal = gl.store.journal_entries(rec.id)
        logs = lb_logs(info)
        gl.close()
    finally:
        lab_down(name, state_root=tmp_path)

    switches = [e for e in journal if e.host is None and e.step == "switch"]
    back_seconds = (switches[-1].at - switches[-2].at).total_seconds()  # the last switch: begin .. done
    going_back = next(e.at for e in journal if e.host is None and e.event == "rolling_back")
    request_to_end = (journal[-1].at - going_back).total_seconds()
    print(f"\ngreen -> blue: {sum(r.sent for r in forward.values())} requests, {failed(forward)} failed; "
          f"switch back: {sum(r.sent for r in backward.values())} requests, {failed(backward)} failed, "
          f"{switch_back:.1f}s from `graylift rollback` (the CLI) to rolled back, the switch itself "
          f"{back_seconds:.1f}s, the request read to rolled back {request_to_end:.1f}s (the CLI process itself "
          f"{cli_seconds:.1f}s)")
    for entry in journal[-16:]:
        print(f"  {entry.at:%H:%M:%S.%f} {entry.host or '-'} {entry.step} {entry.event}")
    for lb, report in forward.items():
        assert report.sent > 0 and report.non_2xx == 0 and report.errors == 0, (lb, report, logs)
    for lb, report in backward.items():
        assert report.sent > 0 and report.non_2xx == 0 and report.errors == 0, (lb, report, logs)
    assert final.state is ReleaseState.ROLLED_BACK, final.message
    assert traffic == {"haproxy": old, "nginx": old, "zookeeper": old}
    assert answered == ({"1.0.0"}, {"1.0.0"})
    assert {h: pids_after[h] for h in old} == pids_old  # the old group was never restarted
    assert {h: pids_after[h] for h in new} == {h: after_switch[h] for h in new}  # nor the new one, going out
    assert {r.host for r in runs} == new
