"""Two nginx load balancers on their own hosts, reached over SSH: both switched and verified per host."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from graylift.core.model import Host
from graylift.core.state import ReleaseState
from graylift.lab import LabInfo, host_exec
from graylift.lab.load import BackgroundLoad
from graylift.lab.nginx import nginx_config, upstream_include, upstream_name
from graylift.service import Graylift
from tests.e2e.conftest import Deploy, lab_fixture, settled

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
lab = lab_fixture(APP, hosts=8, name=f"ngx{os.getpid() % 10000}")
LB_PORT = 8088
LB_DIR = "/srv/lb"


def start_lb(lab: LabInfo, lb: str, app_hosts: list[str]) -> str:
    """Debian's nginx inside lab host ``lb`` (its own namespace), proxying to the app hosts."""
    hosts = [lab.host(h) for h in app_hosts]
    include = upstream_include(APP, lab.apps[APP].port, hosts)
    conf = nginx_config(Path(LB_DIR), {APP: LB_PORT}, {APP: f"{LB_DIR}/upstream.conf"}, listen="0.0.0.0")
    script = (f"mkdir -p {LB_DIR}/tmp && cat > {LB_DIR}/upstream.conf <<'EOF'\n{include}EOF\n"
              f"cat > {LB_DIR}/nginx.conf <<'EOF'\n{conf}EOF\n"
              f"/usr/sbin/nginx -e {LB_DIR}/error.log -c {LB_DIR}/nginx.conf")
    done = host_exec(lab, lb, script)
    assert done.returncode == 0, done.stdout + done.stderr
    url = f"http://{lab.host(lb).address}:{LB_PORT}/"
    deadline = time.monotonic() + 10
    while host_exec(lab, lb, f"curl -s -o /dev/null {url}").returncode != 0:  # 502 is fine: no app yet
        assert time.monotonic() < deadline, "the LB nginx did not answer"
        time.sleep(0.2)
    return url


def test_two_nginx_lbs_over_ssh_are_both_switched(lab: LabInfo, tmp_path: Path) -> None:
    app_hosts = [h.name for h in lab.hosts[:6]]
    lbs = [h.name for h in lab.hosts[6:]]
    data = yaml.safe_load(Path(lab.config_path).read_text())
    data["state"] = f"sqlite:///{tmp_path}/state.db"
    cfg = data["apps"][APP]
    cfg["strategy"].update({"canary": {"group": "beta", "count": 1, "bake": 0}, "batch": {"size": 2}})
    cfg["traffic"] = [cfg["traffic"][0]] + [
        {"type": "nginx", "name": f"nginx-{lb}", "include": f"{LB_DIR}/upstream.conf",
         "upstream": upstream_name(APP), "port": lab.apps[APP].port, "lb_host": lab.host(lb).address,
         "nginx_bin": "/usr/sbin/nginx", "nginx_conf": f"{LB_DIR}/nginx.conf", "reload_settle": 0.3}
        for lb in lbs]
    config = tmp_path / "graylift.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    gl = Graylift(config)
    gl.store.replace_hosts(APP, "prod", [Host(h.name, h.address, group=h.group, tags={"zone": h.zone})
                                          for h in lab.hosts[:6]])
    d = Deploy(lab, APP, config, gl)
    urls = [start_lb(lab, lb, app_hosts) for lb in lbs]
    settled(d.release("1.0.0"), ReleaseState.SUCCEEDED)

    loads = [BackgroundLoad(url, connections=4, rate=150).start() for url in urls]
    try:
        rec = d.release("2.0.0")
    finally:
        reports = [load.stop() for load in loads]
    settled(rec, ReleaseState.SUCCEEDED)
    for url, report in zip(urls, reports, strict=True):
        assert report.sent > 300 and report.non_2xx == 0, (url, report)
    take_outs = [e for e in gl.store.journal_entries(rec.id) if e.step == "take_out" and e.event == "done"]
    assert len(take_outs) == 6
    assert all({f"nginx-{lb}" for lb in lbs} <= set(e.detail["out_of"]) for e in take_outs)
    for lb in lbs:  # every host back in both LBs, and the file is the one nginx runs
        text = host_exec(lab, lb, f"cat {LB_DIR}/upstream.conf").stdout
        assert text.count("server ") == 6 and " down" not in text
    versions = {h: v for h, v in d.versions().items() if h in app_hosts}
    assert set(versions.values()) == {"2.0.0"}
