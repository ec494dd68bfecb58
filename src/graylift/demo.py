"""The README's demo: a 10-host lab, release v1 -> v2 under load through HAProxy (no retries), rollback.

Every claim it prints is checked from outside graylift: versions by reading each host's ``current``
symlink and asking the running app, HAProxy state from its runtime API, silences from Alertmanager.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

from graylift.cli.render import PROGRESS, printer, render_release
from graylift.core.state import ReleaseState
from graylift.lab import LabInfo, lab_down, lab_up
from graylift.lab.files import ZOOKEEPER_SERVICES
from graylift.lab.inspect import active_silences, haproxy_servers, host_versions, serving_versions, zookeeper_overrides
from graylift.lab.load import BackgroundLoad, LoadReport
from graylift.service import Graylift, batch_timings

APP = "pyapp"
ENV = "prod"
LAB = "demo"


@dataclass
class Phase:
    name: str
    release_id: int
    state: str
    seconds: float
    batches: list[tuple[str, int, float | None]]
    load: LoadReport | None
    versions_ok: bool
    fleet_clean: bool
    problems: list[str] = field(default_factory=list)

    @property
    def failed_requests(self) -> int:
        return (self.load.non_2xx + self.load.errors) if self.load else 0


def fleet_problems(info: LabInfo, version: str) -> list[str]:
    """What is wrong with the fleet after a phase: versions, LB membership, silences, registry marks."""
    problems = []
    on_disk = host_versions(info, APP)
    serving = serving_versions(info, APP)
    for host in info.hosts:
        if on_disk[host.name] != version:
            problems.append(f"{host.name}: current -> {on_disk[host.name]}, expected {version}")
        if serving[host.name] != version:
            problems.append(f"{host.name}: app answers {serving[host.name]!r}, expected {version}")
    for name, server in haproxy_servers(info, APP).items():
        if not server.serving:
            problems.append(f"{name}: HAProxy op_state {server.op_state} admin_state {server.admin_state}")
    if silences := active_silences(info):
        problems.append(f"{len(silences)} Alertmanager silence(s) still active")
    if overrides := zookeeper_overrides(info, ZOOKEEPER_SERVICES[APP]):
        problems.append(f"ZooKeeper still disables: {overrides}")
    return problems


def run_phase(gl: Graylift, info: LabInfo, console: Console, name: str, version: str, *, rollback: bool,
              load: bool) -> Phase:
    console.rule(Text(name, style="bold"))
    started = time.monotonic()
    background = BackgroundLoad(info.apps[APP].frontend_url + "/", connections=8).start() if load else None
    try:
        import asyncio

        if rollback:
            rec = asyncio.run(gl.start_rollback(APP, ENV, to_version=None, started_by="demo"))
        else:
            rec = asyncio.run(gl.start_release(APP, ENV, version, started_by="demo"))
        rec = gl.drive(rec.id, printer(console), shown=PROGRESS)
        render_release(console, gl, rec)
    finally:
        report = background.stop() if background else None
    seconds = time.monotonic() - started
    from graylift.core.plan import Plan

    timings = [(label, n, s) for label, n, s, _ in batch_timings(Plan.from_dict(rec.plan), gl.host_runs(rec.id))]
    problems = fleet_problems(info, version)
    return Phase(name, rec.id, rec.state, seconds, timings, report,
                 versions_ok=not any("current" in p or "answers" in p for p in problems),
                 fleet_clean=not problems, problems=problems)


def run_demo(*, hosts: int = 10, keep: bool = False, console: Console | None = None,
             results: Path | None = None) -> int:
    console = console or Console()
    lab_down(LAB)  # a leftover from an interrupted demo
    console.rule(Text(f"graylift demo: a {hosts}-host lab", style="bold"))
    info = lab_up(name=LAB, hosts=hosts, apps=(APP,))
    phases: list[Phase] = []
    try:
        gl = Graylift(Path(info.config_path))
        gl.import_hosts_file(Path(info.hosts_file), APP, ENV)
        phases.append(run_phase(gl, info, console, "install 1.0.0 (first release, no service yet)", "1.0.0",
                                rollback=False, load=False))
        phases.append(run_phase(gl, info, console, "release 1.0.0 -> 2.0.0 under load", "2.0.0",
                                rollback=False, load=True))
        phases.append(run_phase(gl, info, console, "rollback 2.0.0 -> 1.0.0 under load", "1.0.0",
                                rollback=True, load=True))
        gl.close()
    finally:
        if not keep:
            lab_down(LAB)
    ok = report(console, phases)
    if results:
        results.write_text(json.dumps([asdict(p) for p in phases], indent=2, default=str) + "\n")
    return 0 if ok else 1


def report(console: Console, phases: list[Phase]) -> bool:
    console.rule(Text("result", style="bold"))
    ok = True
    for p in phases:
        good = p.state in (ReleaseState.SUCCEEDED, ReleaseState.ROLLED_BACK) and p.fleet_clean and (
            p.failed_requests == 0)
        ok &= good
        load = (f"{p.load.sent} requests through HAProxy, {p.failed_requests} failed "
                f"({p.load.non_2xx} non-2xx, {p.load.errors} connection errors)") if p.load else "no load"
        mark = Text("ok", style="green") if good else Text("FAILED", style="red")
        console.print(Text.assemble(mark, f" {p.name}: release #{p.release_id} {p.state} in {p.seconds:.1f}s; {load}"))
        console.print("     batches: " + ", ".join(
            f"{label} ({n} host{'s' if n > 1 else ''}) {s:.1f}s" if s is not None else label
            for label, n, s in p.batches))
        console.print("     fleet: " + ("every host on the expected version, in HAProxy, unmuted, enabled in "
                                        "ZooKeeper" if p.fleet_clean else "; ".join(p.problems)))
    console.print(Text("demo passed: every host on the expected version, 0 failed requests", style="green") if ok
                  else Text("demo FAILED: see above", style="red"))
    return ok
