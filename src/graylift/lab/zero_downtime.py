"""Release under load through every LB of a lab, with and without graceful offline: the zero-downtime judge.

Load goes through HAProxy (no retries) and nginx (``proxy_next_upstream off``) at once, each driven by wrk.
With graceful offline on, the config has both LBs and ZooKeeper as traffic switches; with it off, the
config has no traffic switch and no quiet period, so hosts are restarted while the LBs still send to them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.state import ReleaseState
from graylift.lab.files import nginx_traffic_entry
from graylift.lab.info import LabInfo
from graylift.lab.load import LoadReport, WrkLoad
from graylift.service import Graylift

ENV = "prod"


@dataclass
class Scenario:
    name: str
    app: str
    version: str
    graceful: bool
    state: str = ""
    seconds: float = 0.0
    hosts_restarted: int = 0
    loads: dict[str, LoadReport] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(r.non_2xx + r.errors for r in self.loads.values())

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.loads.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "app": self.app, "version": self.version, "graceful": self.graceful,
            "state": self.state, "seconds": round(self.seconds, 1), "hosts_restarted": self.hosts_restarted,
            "requests": self.sent, "failed": self.failed,
            "requests_per_host_restarted": self.sent // max(1, self.hosts_restarted),
            "per_lb": {lb: {"sent": r.sent, "non_2xx": r.non_2xx, "errors": r.errors, "error_kinds": r.error_kinds}
                       for lb, r in self.loads.items()},
        }


def write_config(info: LabInfo, app: str, path: Path, *, graceful: bool, strategy: dict[str, Any]) -> Path:
    data = yaml.safe_load(Path(info.config_path).read_text())
    data["state"] = f"sqlite:///{path.parent / 'state.db'}"
    cfg = data["apps"][app]
    if graceful:
        cfg["traffic"] = [*cfg["traffic"][:1], nginx_traffic_entry(info, app), *cfg["traffic"][1:]]
    else:
        cfg["traffic"] = []
        cfg["quiet_period"] = 0
    cfg["strategy"].update(strategy)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def open_graylift(info: LabInfo, app: str, workdir: Path, *, graceful: bool, strategy: dict[str, Any]) -> Graylift:
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(info, app, workdir / ("graceful.yaml" if graceful else "abrupt.yaml"),
                          graceful=graceful, strategy=strategy)
    gl = Graylift(config)
    gl.store.replace_hosts(app, ENV, load_hosts_file(Path(info.hosts_file)))
    return gl


def release(gl: Graylift, app: str, version: str) -> str:
    rec = asyncio.run(gl.start_release(app, ENV, version, started_by="zero-downtime"))
    return asyncio.run(gl.engine().drive(rec.id)).state


def run(info: LabInfo, workdir: Path, *, app: str, version: str, graceful: bool, strategy: dict[str, Any],
        connections: int = 16) -> Scenario:
    """Release ``version`` under wrk load through HAProxy and nginx; count what the clients saw."""
    gl = open_graylift(info, app, workdir, graceful=graceful, strategy=strategy)
    scenario = Scenario(f"{app} -> {version} ({'graceful' if graceful else 'no graceful offline'})",
                        app, version, graceful)
    lab_app = info.apps[app]
    loads = {"haproxy": WrkLoad(lab_app.frontend_url + "/", connections=connections).start(),
             "nginx": WrkLoad(lab_app.nginx_url + "/", connections=connections, close=True).start()}
    time.sleep(1.0)  # both loads running before the first host is touched
    started = time.monotonic()
    try:
        scenario.state = release(gl, app, version)
    finally:
        scenario.seconds = time.monotonic() - started
        time.sleep(1.0)
        scenario.loads = {lb: load.stop() for lb, load in loads.items()}
    rec = gl.store.list_releases(app, ENV, limit=1)[0]
    scenario.hosts_restarted = sum(1 for r in gl.store.host_runs(rec.id) if "start" in r.done_steps)
    gl.close()
    return scenario


def install(info: LabInfo, workdir: Path, app: str, version: str, strategy: dict[str, Any]) -> None:
    gl = open_graylift(info, app, workdir, graceful=True, strategy=strategy)
    state = release(gl, app, version)
    gl.close()
    if state != ReleaseState.SUCCEEDED:
        raise RuntimeError(f"installing {app} {version} on the lab ended {state}")
