#!/usr/bin/env python3
"""Side by side: the same release by graylift, pyinfra 3.x, an Ansible rolling playbook and a minimal asyncio
driver whose host-side timings give the physical limit (issue 11).

    sudo .venv/bin/python bench/vs_peers.py                          # pyapp:50, pyapp:200, shop:6, shop:12
    sudo .venv/bin/python bench/vs_peers.py --fleets pyapp:12,shop:6 --tools graylift,minimal
    sudo .venv/bin/python bench/vs_peers.py --fleets shop:6 --tools graylift,minimal,pyinfra --rounds 5

Needs pyinfra and matplotlib in their own venv (not project dependencies):
``python3 -m venv /var/tmp/graylift-peers && /var/tmp/graylift-peers/bin/pip install 'pyinfra>=3,<4' matplotlib``
(or ``--peers-venv``). Ansible is ansible-core from the dev extras.

Per fleet: a lab (hosts, HAProxy with no retries, artifact server, Alertmanager), pyapp or shop 1.0.0 installed
by graylift (not measured), then, each under the same wrk load through HAProxy, alternating 1.0.0 <-> 2.0.0:
graylift release, graylift rollback, the minimal driver, pyinfra, Ansible. Before every run but the rollback,
the hosts' release dirs other than the current one are deleted, so every release downloads its package (a
rollback goes back to the release dir it left, as graylift's rollback does). The same batch plan for all:
the canary (the first host), then batches of ``common.batch_size(N)``; the steps: bench/peers/common.py.

Wall seconds are the tool's process (graylift ``release --wait``, each pyinfra run, ansible-playbook) from
start to exit; controller CPU is RUSAGE_CHILDREN of its process tree (bench/peers/cpu_run.py), or
RUSAGE_THREAD of the thread that runs the in-process minimal driver. Ratio = wall / physical limit, the limit
measured by the minimal driver in the same run (bench/peers/minimal.py). After every run each host must be on
the target version and UP in HAProxy; failed requests (non-2xx and socket errors) are counted per run.
With ``--rounds N`` every tool runs N times on the same lab, interleaved (every other round in reverse
order), each run's ratio taken to the limit of its own round; the summary gives each tool's median wall,
ratio and CPU per host, and the plot shows the medians.
Writes bench/results/vs_peers.json and bench/results/vs_peers.png, prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from peers import common, minimal, report  # noqa: E402

from graylift.lab import lab_down, lab_up  # noqa: E402
from graylift.lab.files import haproxy_traffic_entry  # noqa: E402
from graylift.lab.info import LabInfo  # noqa: E402
from graylift.lab.load import LoadReport, WrkLoad  # noqa: E402

PEERS = BENCH / "peers"
RESULTS = BENCH / "results"
ENV = "prod"
VERSIONS = ("1.0.0", "2.0.0")
TOOLS = ("graylift", "minimal", "pyinfra", "ansible")
DEFAULT_FLEETS = "pyapp:50,pyapp:200,shop:6,shop:12"
BIN = Path(sys.executable).parent
WORKDIR = Path("/var/tmp/graylift-vs-peers")


class Fleet:
    """One lab and what every tool needs to release on it."""

    def __init__(self, info: LabInfo, app: str, workdir: Path, peers_venv: Path) -> None:
        self.info, self.app, self.workdir, self.peers_venv = info, app, workdir, peers_venv
        self.names = [h.name for h in info.hosts]
        self.batch_size = common.batch_size(len(self.names))
        self.batches = common.batch_plan(self.names, self.batch_size)
        self.lab_app = info.apps[app]
        self.config = workdir / "graylift.yaml"
        self.write_graylift_config()

    def write_graylift_config(self) -> None:
        """The lab's config with HAProxy as the one traffic switch (no ZooKeeper: the same steps as the peers),
        Alertmanager muting as in the lab, canary 1 with no bake, automatic promotion, batches of b."""
        data = yaml.safe_load(Path(self.info.config_path).read_text())
        data["state"] = f"sqlite:///{self.workdir / 'state.db'}"
        data["ssh"]["connect_timeout"] = common.CONNECT_TIMEOUT
        cfg = data["apps"][self.app]
        cfg["traffic"] = [haproxy_traffic_entry(self.info.haproxy_socket, self.app)]
        cfg["strategy"].update({"canary": {"group": "beta", "count": 1, "bake": 0, "promote": "auto"},
                                "batch": {"size": self.batch_size}, "pause": 0,
                                "max_parallel": max(50, self.batch_size)})
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))

    def sha256(self, version: str) -> str:
        path = Path(self.info.artifact_dir) / self.app / version / f"{self.app}-{version}.{common.EXT[self.app]}"
        return path.with_name(path.name + ".sha256").read_text().split()[0]

    def spec(self, version: str) -> dict[str, Any]:
        return {"app": self.app, "version": version, "deploy": self.lab_app.deploy_dir, "port": self.lab_app.port,
                "url": common.package_url(self.info.artifact_base_url, self.app, version),
                "sha256": self.sha256(version), "socket": self.info.haproxy_socket, "batches": self.batches,
                "addresses": {h.name: h.address for h in self.info.hosts}, "key": self.info.client_key,
                "known_hosts": self.info.known_hosts}

    def host_dir(self, name: str) -> Path:
        return Path(self.info.host(name).dir) / "srv" / self.app

    def reset(self) -> None:
        """Delete every release dir but the current one on every host (the host dirs are the hosts' /srv)."""
        for name in self.names:
            current = os.readlink(self.host_dir(name) / "current").rpartition("/")[2]
            for entry in (self.host_dir(name) / "releases").iterdir():
                if entry.name != current:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def problems(self, version: str) -> list[str]:
        """Hosts not on ``version`` or not UP (ready) in HAProxy."""
        stat = common.haproxy_command(self.info.haproxy_socket, "show stat")
        found = []
        for name in self.names:
            link = self.host_dir(name) / "current"
            target = os.readlink(link) if link.is_symlink() else "(none)"
            status = common.stat_row(stat, self.app, name).get("status")
            if target != f"releases/{version}" or status != "UP":
                found.append(f"{name}: current -> {target}, HAProxy {status}")
        return found


def run_measured(argv: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall, cpu, exit status) of ``argv`` run under cpu_run.py; its output goes to ``log``."""
    out = log.with_suffix(".cpu.json")
    with log.open("w") as f:
        subprocess.run([sys.executable, str(PEERS / "cpu_run.py"), str(out), "--", *argv], stdout=f,
                       stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, check=False)
    data = json.loads(out.read_text())
    return data["wall"], data["cpu"], data["rc"]


def graylift_cmd(fleet: Fleet, *args: str) -> list[str]:
    return [str(BIN / "graylift"), "-c", str(fleet.config), *args]


def run_graylift(fleet: Fleet, version: str, log: Path, *, rollback: bool = False) -> tuple[float, float, int]:
    action = ["rollback", fleet.app, "--env", ENV] if rollback else ["release", fleet.app, version, "--env", ENV]
    return run_measured(graylift_cmd(fleet, *action, "--wait"), log)


def run_minimal(fleet: Fleet, version: str, log: Path, limit: dict[str, Any]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_THREAD)
    started = time.monotonic()
    try:
        waits = asyncio.run(minimal.release(fleet.spec(version)))
        rc = 0
    except Exception as exc:  # recorded as the run's failure; the fleet's check names the hosts
        log.write_text(f"{type(exc).__name__}: {exc}\n")
        waits, rc = {}, 1
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_THREAD)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if waits:
        limit["seconds"] = common.physical_limit(fleet.batches, waits)
        limit["hosts"] = {h: {"drain": w.drain, "stop": w.stop, "start_to_healthy": w.start_to_healthy}
                          for h, w in waits.items()}
    return wall, cpu, rc


def run_pyinfra(fleet: Fleet, version: str, log: Path) -> tuple[float, float, int]:
    spec_file = log.with_suffix(".spec.json")
    spec_file.write_text(json.dumps(fleet.spec(version)))
    config = log.with_suffix(".config.py")
    config.write_text(f"CONNECT_TIMEOUT = {common.CONNECT_TIMEOUT}\n")
    runs = []
    for index, batch in enumerate(fleet.batches):
        inventory = log.with_name(f"{log.stem}.inventory{index}.py")
        hosts = [(h, {"ssh_hostname": fleet.info.host(h).address, "ssh_user": "root", "ssh_key": fleet.info.client_key,
                      "ssh_known_hosts_file": fleet.info.known_hosts, "ssh_strict_host_key_checking": "yes"})
                 for h in batch]
        inventory.write_text(f"hosts = {hosts!r}\n")
        runs.append(" ".join(map(str, [fleet.peers_venv / "bin" / "pyinfra", "-y", "--config", config,
                                       "--parallel", len(batch), inventory, PEERS / "pyinfra_deploy.py"])))
    return run_measured(["sh", "-c", " && ".join(runs)], log,
                        {"PEERS_SPEC": str(spec_file), "PEERS_DIR": str(PEERS)})


def run_ansible(fleet: Fleet, version: str, log: Path) -> tuple[float, float, int]:
    info, spec = fleet.info, fleet.spec(version)
    order = [h for batch in fleet.batches for h in batch]
    inventory = log.with_suffix(".ini")
    inventory.write_text("[fleet]\n" + "".join(f"{h} ansible_host={info.host(h).address}\n" for h in order))
    extra = log.with_suffix(".vars.json")
    extra.write_text(json.dumps({"batch": fleet.batch_size, "steps": common.step_scripts(spec),
                                 "haproxy_socket": info.haproxy_socket, "backend": fleet.app,
                                 "peers_dir": str(PEERS)}))
    control = Path(tempfile.mkdtemp(prefix="acp", dir="/tmp"))  # ssh control sockets: short paths
    cfg = log.with_suffix(".cfg")
    cfg.write_text("\n".join([
        "[defaults]", f"forks = {max(5, fleet.batch_size)}", "host_key_checking = True", "gathering = explicit",
        "interpreter_python = /usr/bin/python3", "remote_user = root", f"private_key_file = {info.client_key}",
        "retry_files_enabled = False", f"timeout = {common.CONNECT_TIMEOUT}", "",
        "[ssh_connection]", "pipelining = True", f"control_path_dir = {control}",
        f"ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={info.known_hosts} "
        "-o StrictHostKeyChecking=yes", ""]))
    try:
        return run_measured([str(BIN / "ansible-playbook"), "-i", str(inventory), str(PEERS / "rolling.yml"),
                             "-e", f"@{extra}"], log, {"ANSIBLE_CONFIG": str(cfg), "LC_ALL": "C.UTF-8"})
    finally:
        shutil.rmtree(control, ignore_errors=True)


def under_load(fleet: Fleet, run: Any) -> tuple[tuple[float, float, int], LoadReport]:
    load = WrkLoad(fleet.lab_app.frontend_url + "/", connections=8)
    load.argv = ["nice", "-n", "19", *load.argv]  # the load yields the CPU to the tool under test
    load.start()
    time.sleep(1.0)
    try:
        result = run()
    finally:
        time.sleep(1.0)
        loaded = load.stop()
    return result, loaded


def round_order(tools: tuple[str, ...], number: int) -> list[tuple[str, str]]:
    """The runs of round ``number`` (from 0): graylift's release and then its rollback as one block, each other
    tool a block; every other round the blocks in reverse, so no tool always runs first or last."""
    blocks = [[("graylift", "release"), ("graylift", "rollback")]] if "graylift" in tools else []
    blocks += [[(t, "release")] for t in tools if t != "graylift"]
    if number % 2:
        blocks.reverse()
    return [step for block in blocks for step in block]


def fleet_runs(app: str, hosts: int, tools: tuple[str, ...], workdir: Path, peers_venv: Path,
               rounds: int = 1) -> dict[str, Any]:
    lab = f"vp{app[:2]}{hosts}"
    lab_down(lab)
    info = lab_up(lab, hosts=hosts, apps=(app,))
    try:
        fleet = Fleet(info, app, workdir, peers_venv)
        subprocess.run(graylift_cmd(fleet, "hosts", "import", app, info.hosts_file, "--env", ENV),
                       check=True, capture_output=True)
        wall, _, rc = run_graylift(fleet, VERSIONS[0], workdir / "install.log")
        problems = fleet.problems(VERSIONS[0])
        for _ in range(10):  # a first start is UP in HAProxy at its next health check (inter 500ms)
            if rc != 0 or not problems:
                break
            time.sleep(0.5)
            problems = fleet.problems(VERSIONS[0])
        if rc != 0 or problems:
            raise RuntimeError(f"installing {app} {VERSIONS[0]} failed (exit {rc}; {'; '.join(problems[:3])}): "
                               f"see {workdir / 'install.log'}")
        print(f"{app}:{hosts}: installed {VERSIONS[0]} in {wall:.1f}s; plan {[len(b) for b in fleet.batches]}",
              flush=True)
        limits: list[dict[str, Any]] = [{} for _ in range(rounds)]
        runs: list[dict[str, Any]] = []
        steps = [(n, tool, kind) for n in range(rounds) for tool, kind in round_order(tools, n)]
        current = VERSIONS[0]
        for number, tool, kind in steps:
            limit = limits[number]
            target = VERSIONS[1] if current == VERSIONS[0] else VERSIONS[0]
            if kind == "release":
                fleet.reset()
            log = workdir / f"{tool}-{kind}.log"
            call = {"graylift": partial(run_graylift, fleet, target, log, rollback=kind == "rollback"),
                    "minimal": partial(run_minimal, fleet, target, log, limit),
                    "pyinfra": partial(run_pyinfra, fleet, target, log),
                    "ansible": partial(run_ansible, fleet, target, log)}[tool]
            load_before = os.getloadavg()[0]
            (wall, cpu, rc), loaded = under_load(fleet, call)
            problems = fleet.problems(target)
            row = {"tool": tool, "kind": kind, "round": number, "from": current, "to": target, "wall": round(wall, 3),
                   "cpu": round(cpu, 3), "cpu_per_host": round(cpu / hosts, 4), "exit": rc,
                   "requests": loaded.sent, "failed": loaded.non_2xx + loaded.errors,
                   "error_kinds": loaded.error_kinds, "loadavg_1m": [load_before, os.getloadavg()[0]],
                   "problems": problems[:5], "log": log.read_text()[-2000:] if rc else ""}
            if tool == "graylift":
                process = json.loads(log.with_suffix(".cpu.json").read_text())
                row["journal"] = report.graylift_journal(fleet.config, fleet.app, ENV, process["started_at"],
                                                         process["ended_at"])
            runs.append(row)
            print(f"  round {number + 1}: {tool} {kind} {current} -> {target}: {wall:.1f}s, cpu {cpu:.2f}s, exit {rc}, "
                  f"{loaded.sent} requests, {row['failed']} failed, {len(problems)} hosts wrong", flush=True)
            if problems:  # the fleet is in an unknown state: the runs so far are kept, the next tools skipped
                row["error"] = f"{tool} left hosts wrong: {problems[:3]}; log {log}"
                break
            current = target
        return report.fleet_result(app, hosts, fleet.batches, limits, runs)
    finally:
        lab_down(lab)


def parse_fleets(text: str) -> list[tuple[str, int]]:
    """``pyapp:50,shop:6`` -> [("pyapp", 50), ("shop", 6)]."""
    fleets = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        app, _, count = item.partition(":")
        if app not in common.EXT or not count.isdigit() or int(count) < 3:
            raise ValueError(f"bad fleet {item!r}: APP:HOSTS with APP pyapp or shop and at least 3 hosts")
        fleets.append((app, int(count)))
    return fleets


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fleets", default=DEFAULT_FLEETS, help=f"APP:HOSTS,... (default {DEFAULT_FLEETS})")
    parser.add_argument("--tools", default=",".join(TOOLS), help="graylift,minimal,pyinfra,ansible")
    parser.add_argument("--peers-venv", type=Path, default=Path("/var/tmp/graylift-peers"))
    parser.add_argument("--rounds", type=int, default=1, help="runs of every tool per fleet, interleaved; "
                        "the summary gives each tool's median (default 1)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help=f"logs, configs, state (default {WORKDIR})")
    args = parser.parse_args()
    try:
        fleets = parse_fleets(args.fleets)
    except ValueError as exc:
        parser.error(str(exc))
    tools = tuple(t for t in TOOLS if t in args.tools.split(","))
    if "minimal" not in tools:
        parser.error("--tools must include minimal: it measures the physical limit")
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    document = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
                "cpus": os.cpu_count(), "fleets": results, "errors": errors}
    args.results.mkdir(parents=True, exist_ok=True)
    for app, hosts in fleets:
        workdir = args.workdir / f"{app}-{hosts}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            results.append(fleet_runs(app, hosts, tools, workdir, args.peers_venv, max(1, args.rounds)))
        except Exception as exc:  # one fleet's failure is recorded; the other fleets still run
            errors.append(f"{app}:{hosts}: {type(exc).__name__}: {exc}")
            print(f"{app}:{hosts} FAILED: {exc}", flush=True)
        (args.results / "vs_peers.json").write_text(json.dumps(document, indent=2) + "\n")  # after every fleet
    print(report.markdown(document))
    print(report.plot(args.results / "vs_peers.json", args.results / "vs_peers.png", args.peers_venv))
    errors += [r["error"] for f in results for r in f["runs"] if "error" in r]
    ok = not errors and all(r["failed"] == 0 and r["exit"] == 0 for f in results for r in f["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
