#!/usr/bin/env python3
"""kill -9 on the real lab: the controller is killed (SIGKILL) at many points of releases, rollbacks and
reverts, `graylift resume` takes over, and the fleet is checked from outside graylift.

    sudo .venv/bin/python bench/chaos.py                 # every point (about 60), 4 pyapp hosts
    sudo .venv/bin/python bench/chaos.py --only 3,17     # some points again (their numbers in the output)

Points are of two kinds:

* named crash points (``GRAYLIFT_CRASH_AT``, see ``graylift.engine.crash``): before and after every step kind
  (after = the step acted on the host, its ``done`` is not journaled yet), after every backend call that changes
  something (take out, put back, mute, unmute), in a release, a rollback and the revert of a failed canary;
* kills at random times (seeded, so a run is repeatable) of a release or a rollback.

Every scenario runs under load through HAProxy (no retries) and nginx (``proxy_next_upstream off``), from a
fresh database (the first release reads the fleet's version from its preflight). After the kill,
``graylift resume --wait`` (without the crash hook) finishes the release; then every check is made from
outside graylift: the release is final, or paused with a reason; each host's ``current`` link and what its
app answers are the version its record says; HAProxy, nginx, ZooKeeper, etcd and Alertmanager have no host
out or muted unless its record says ``needs_attention`` with the reason. Prints ``N/N clean`` and the failed
requests; writes bench/results/chaos.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.flow import RELEASE_FLOW
from graylift.core.state import HostState, ReleaseState
from graylift.engine.crash import ON_THE_HOST
from graylift.lab import LabInfo, lab_down, lab_up
from graylift.lab import services as lab_services
from graylift.lab.files import ZOOKEEPER_SERVICES, nginx_traffic_entry
from graylift.lab.inspect import etcd_key, fleet_problems, host_versions
from graylift.lab.load import WrkLoad
from graylift.service import Graylift

RESULTS = Path(__file__).with_name("results") / "chaos.json"
APP, ENV, LAB = "pyapp", "prod", "chaos"
GOOD = ("1.0.0", "1.1.0", "2.0.0")
BROKEN = "3.0.0"  # answers /health with 500: its canary is reverted
STRATEGY = {"canary": {"group": "beta", "count": 1, "bake": 1, "promote": "auto"}, "batch": {"size": 1},
            "on_failure": "pause"}
GRAYLIFT = [sys.executable, "-m", "graylift"]
FINAL = {ReleaseState.SUCCEEDED, ReleaseState.ROLLED_BACK, ReleaseState.ABORTED, ReleaseState.FAILED}


@dataclass
class Point:
    kind: str  # release | rollback | revert
    crash_at: str | None = None  # GRAYLIFT_CRASH_AT
    delay: float | None = None  # or a kill this many seconds after the controller started

    @property
    def label(self) -> str:
        return f"{self.kind} {self.crash_at or f'kill at {self.delay:.1f}s'}"


@dataclass
class Outcome:
    number: int
    point: str
    killed: bool
    state: str
    message: str
    requests: int
    failed_requests: int
    needs_attention: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.killed and not self.problems


def points(info: LabInfo, etcd_url: str, seed: int) -> list[Point]:
    hosts = [h.name for h in info.hosts]
    backends = [f"haproxy:{APP}", f"nginx-{APP}", f"zookeeper:/dubbo/{ZOOKEEPER_SERVICES[APP]}",
                f"etcd:/services/{APP}/*:{info.apps[APP].port}"]
    silencer = f"alertmanager:{info.alertmanager_url}"
    out: list[Point] = []
    for i, step in enumerate(RELEASE_FLOW):  # every step kind, before it acts and in the gap after it
        host = hosts[i % len(hosts)]
        out.append(Point("release", f"before:{step.value}:{host}"))
        out.append(Point("release", f"after:{step.value}:{hosts[(i + 1) % len(hosts)]}"))
    for i, backend in enumerate(backends):  # every backend call that changes something
        out.append(Point("release", f"after:{backend}.take_out:{hosts[i % len(hosts)]}"))
        out.append(Point("release", f"after:{backend}.put_back:{hosts[(i + 2) % len(hosts)]}"))
    out += [Point("release", f"after:{silencer}.mute:{hosts[1]}"),
            Point("release", f"after:{silencer}.unmute:{hosts[2]}")]
    for step in ("take_out", "quiet", "stop", "switch", "start", "health", "put_back", "unmute"):  # a rollback
        out.append(Point("rollback", f"after:{step}:{hosts[len(out) % len(hosts)]}"))
    out.append(Point("rollback", f"after:{backends[0]}.take_out:*:2"))
    out.append(Point("rollback", f"after:{backends[2]}.put_back:*:3"))
    # the revert of the failed canary: stop, switch and start run a second time on it; health, put back and
    # unmute succeed there for the first time
    for step, nth in (("stop", 2), ("switch", 2), ("start", 2), ("health", 1), ("put_back", 1), ("unmute", 1)):
        out.append(Point("revert", f"after:{step}:{hosts[0]}:{nth}"))
    # stop, switch, start and health are one command on the host: the points between them are not there
    out = [p for p in out if p.crash_at is None or tuple(p.crash_at.split(":")[:2]) not in ON_THE_HOST]
    rng = random.Random(seed)
    out += [Point("release", delay=round(rng.uniform(0.5, 14.0), 1)) for _ in range(7)]
    out += [Point("rollback", delay=round(rng.uniform(0.3, 10.0), 1)) for _ in range(5)]
    return out


class Scenario:
    """One point: a fresh database, load, the controller killed, resume, the checks."""

    def __init__(self, info: LabInfo, workdir: Path, etcd_url: str, number: int) -> None:
        self.info, self.etcd_url = info, etcd_url
        self.dir = workdir / f"p{number:02d}"
        self.dir.mkdir(parents=True)
        data = yaml.safe_load(Path(info.config_path).read_text())
        data["state"] = f"sqlite:///{self.dir}/state.db"
        app = data["apps"][APP]
        app["traffic"] = [*app["traffic"][:1], nginx_traffic_entry(info, APP), *app["traffic"][1:],
                          {"type": "etcd", "url": etcd_url, "service": APP, "port": info.apps[APP].port}]
        app["strategy"].update(STRATEGY)
        self.config = self.dir / "graylift.yaml"
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))
        self.gl = Graylift(self.config)
        self.gl.store.replace_hosts(APP, ENV, load_hosts_file(Path(info.hosts_file)))

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GRAYLIFT, "-c", str(self.config), *args], capture_output=True, text=True,
                              timeout=timeout, env=os.environ | {"COLUMNS": "200"} | (env or {}))

    def controller(self, args: list[str], point: Point) -> bool:
        """Run the controller with the crash hook or kill it after ``point.delay``; True if it was killed."""
        env = os.environ | ({"GRAYLIFT_CRASH_AT": point.crash_at} if point.crash_at else {})
        proc = subprocess.Popen([*GRAYLIFT, "-c", str(self.config), *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        if point.delay is not None:
            try:
                proc.wait(timeout=point.delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=600) == -signal.SIGKILL


def run_point(info: LabInfo, workdir: Path, etcd_url: str, number: int, point: Point) -> Outcome:
    s = Scenario(info, workdir, etcd_url, number)
    before = host_versions(info, APP)
    version = Counter(v for v in before.values() if v in GOOD).most_common(1)[0][0]
    loads = [WrkLoad(info.apps[APP].frontend_url + "/", connections=4).start(),
             WrkLoad(info.apps[APP].nginx_url + "/", connections=4, close=True).start()]
    problems: list[str] = []
    try:
        time.sleep(0.3)
        nxt = next_good(version)
        if point.kind == "release":
            killed = s.controller(["release", APP, nxt, "--env", ENV, "--wait"], point)
        elif point.kind == "revert":
            killed = s.controller(["release", APP, BROKEN, "--env", ENV, "--wait"], point)
        else:
            done = s.cli("release", APP, nxt, "--env", ENV, "--wait")
            if done.returncode != 0:
                problems.append(f"the release before the rollback failed: {done.stdout[-300:]} {done.stderr[-300:]}")
            before = {h.name: nxt for h in info.hosts}
            killed = s.controller(["rollback", APP, "--env", ENV, "--wait"], point)
        if killed:
            s.cli("resume", "--wait", timeout=600)
        time.sleep(0.5)
    finally:
        reports = [load.stop() for load in loads]
    recs = s.gl.store.list_releases(APP, ENV)
    if not recs:  # killed during the preflight, before the release was recorded: nothing may have changed
        problems += fleet_problems(info, APP, before, etcd_url=etcd_url)
        return Outcome(number, point.label, killed, "not recorded", "killed before the release was recorded",
                       sum(r.sent for r in reports), sum(r.non_2xx + r.errors for r in reports), {}, problems)
    rec = recs[0]
    if rec.state not in FINAL and not (rec.state is ReleaseState.PAUSED and rec.message):
        problems.append(f"release #{rec.id} is {rec.state.value}: {rec.message}")
    runs = s.gl.store.host_runs(rec.id)
    attention = {r.host: r.error or "" for r in runs if r.state is HostState.NEEDS_ATTENTION}
    problems += [f"{h}: needs_attention without a reason" for h, why in attention.items() if not why]
    expected: dict[str, str | None] = dict(before)
    for r in runs:
        if r.state in (HostState.DONE, HostState.ROLLED_BACK):
            expected[r.host] = r.target_version
    problems += fleet_problems(info, APP, expected, etcd_url=etcd_url, exempt=tuple(attention))
    return Outcome(number, point.label, killed, rec.state.value, rec.message, sum(r.sent for r in reports),
                   sum(r.non_2xx + r.errors for r in reports), attention, problems)


def next_good(version: str) -> str:
    return GOOD[(GOOD.index(version) + 1) % len(GOOD)]


def write_results(args: argparse.Namespace, outcomes: list[Outcome], started: float) -> tuple[int, int, int]:
    """bench/results/chaos.json, rewritten after every point (a run cut short keeps what it measured)."""
    clean = sum(o.clean for o in outcomes)
    failed = sum(o.failed_requests for o in outcomes)
    requests = sum(o.requests for o in outcomes)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "hosts": args.hosts, "seed": args.seed,
        "command": "sudo .venv/bin/python bench/chaos.py" + (f" --only {args.only}" if args.only else ""),
        "clean": clean, "points": len(outcomes), "requests": requests, "failed_requests": failed,
        "seconds": round(time.monotonic() - started), "outcomes": [asdict(o) for o in outcomes]}, indent=2) + "\n")
    return clean, failed, requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--only", default="", help="comma-separated point numbers")
    args = parser.parse_args()
    lab_down(LAB)
    info = lab_up(LAB, hosts=args.hosts, apps=(APP,))
    outcomes: list[Outcome] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            etcd = lab_services.start_etcd(Path(tmp) / "etcd", lab_services.free_port())
            etcd_url = f"http://127.0.0.1:{etcd.port}"
            lab_services.etcd_register(int(etcd.port or 0), {etcd_key(info, APP, h.name): '{"weight": 100}'
                                                             for h in info.hosts})
            try:
                first = Scenario(info, Path(tmp), etcd_url, 0)
                done = first.cli("release", APP, GOOD[0], "--env", ENV, "--wait")
                if done.returncode != 0:
                    raise SystemExit(f"the first install failed: {done.stdout}{done.stderr}")
                chosen = {int(n) for n in args.only.split(",") if n}
                for number, point in enumerate(points(info, etcd_url, args.seed), 1):
                    if chosen and number not in chosen:
                        continue
                    outcome = run_point(info, Path(tmp), etcd_url, number, point)
                    outcomes.append(outcome)
                    write_results(args, outcomes, started)
                    mark = "clean" if outcome.clean else ("NOT KILLED" if not outcome.killed else "DIRTY")
                    print(f"{number:3} {mark:10} {outcome.point:64} -> {outcome.state:12} "
                          f"{outcome.failed_requests}/{outcome.requests} failed"
                          + (f" needs_attention={sorted(outcome.needs_attention)}" if outcome.needs_attention else "")
                          + "".join(f"\n      {p}" for p in outcome.problems), flush=True)
            finally:
                lab_services.stop_service(etcd)
    finally:
        lab_down(LAB)
    clean, failed, requests = write_results(args, outcomes, started)
    print(f"{clean}/{len(outcomes)} clean; {failed} failed requests of {requests} "
          f"(HAProxy without retries + nginx, under every kill); {RESULTS}")
    return 0 if clean == len(outcomes) and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
