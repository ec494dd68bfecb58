#!/usr/bin/env python3
"""How close does a graylift release come to its physical limit, and how much memory does the controller use?

Runs on a real lab (root): N hosts, the Python app, rolling batches, no canary. The physical limit of a
release is, per batch, the slowest host's own stop + start + health time (read from the journal), plus
the configured waits (quiet period, registry propagation, pause between batches). Everything else, SSH
round trips, LB and registry calls, staging, the journal, the engine, is graylift's overhead.

    sudo .venv/bin/python bench/release_overhead.py                    # 50 hosts, batch 10
    sudo .venv/bin/python bench/release_overhead.py --hosts 200 --batch 20

Figures are appended to bench/results.json (and printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import yaml

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.core.plan import Plan
from graylift.lab import lab_down, lab_up
from graylift.service import Graylift

APP, ENV = "pyapp", "prod"
RESULTS = Path(__file__).with_name("results.json")


def configure(config: Path, out: Path, state: Path, batch: int) -> dict[str, object]:
    data = yaml.safe_load(config.read_text())
    data["state"] = f"sqlite:///{state}"
    app = data["apps"][APP]
    app["strategy"]["canary"] = {}
    app["strategy"]["batch"] = {"size": batch}
    app["strategy"]["max_parallel"] = batch
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return app  # type: ignore[no-any-return]


@contextlib.contextmanager
def lab_fleet(lab: str, hosts: int, batch: int) -> Iterator[tuple[Path, dict[str, object], float]]:
    """A lab of ``hosts`` pyapp hosts, its hosts imported into a fresh state database under a config with
    batches of ``batch`` and no canary: (config file, the app's config, lab bring-up seconds). Taken down
    after, whatever happens."""
    lab_down(lab)
    t0 = time.monotonic()
    info = lab_up(lab, hosts=hosts, apps=(APP,))
    lab_seconds = time.monotonic() - t0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "graylift.yaml"
            app_cfg = configure(Path(info.config_path), config, Path(tmp) / "state.db", batch)
            gl = Graylift(config)
            gl.store.replace_hosts(APP, ENV, load_hosts_file(Path(info.hosts_file)))
            gl.close()
            yield config, app_cfg, lab_seconds
    finally:
        lab_down(lab)


def release(config: Path, version: str) -> tuple[float, float, int]:
    """Run `graylift release --wait` as its own process: (seconds, peak RSS MiB, exit code)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "graylift", "-c", str(config), "release", APP, version,
                           "--env", ENV, "--wait"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return seconds, peak_kib / 1024, proc.returncode


def physical_limit(gl: Graylift, release_id: int, app_cfg: dict) -> tuple[float, float, list[dict[str, float]]]:
    """(limit seconds, engine-measured release seconds, per-batch figures) from the journal."""
    rec = gl.store.get_release(release_id)
    plan = Plan.from_dict(rec.plan)
    own: dict[str, float] = {}
    for entry in gl.store.journal_entries(release_id):
        if entry.host and entry.event == "done" and entry.step in ("stop", "start", "health"):
            own[entry.host] = own.get(entry.host, 0.0) + float(entry.detail.get("seconds", 0.0))
    waits = float(app_cfg.get("quiet_period", 0)) + sum(
        float(t.get("propagation_seconds", 0)) for t in app_cfg.get("traffic", []))
    pause = float(app_cfg["strategy"].get("pause", 0))
    batches, limit = [], 0.0
    runs = {r.host: r for r in gl.store.host_runs(release_id)}
    for b in plan.batches:
        slowest = max(own.get(h, 0.0) for h in b.hosts)
        starts = [runs[h].started_at for h in b.hosts if runs[h].started_at]
        ends = [runs[h].finished_at for h in b.hosts if runs[h].finished_at]
        actual = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
        batches.append({"hosts": len(b.hosts), "slowest_restart": round(slowest, 3), "waits": waits,
                        "actual": round(actual, 3)})
        limit += slowest + waits
    limit += pause * max(0, len(plan.batches) - 1)
    total = ((rec.finished_at or rec.updated_at) - rec.created_at).total_seconds()
    return limit, total, batches


def step_seconds(gl: Graylift, release_id: int) -> dict[str, float]:
    """Mean seconds per step over all hosts: where the time of a host goes."""
    sums: dict[str, list[float]] = {}
    for entry in gl.store.journal_entries(release_id):
        if entry.host and entry.event == "done" and "seconds" in entry.detail:
            sums.setdefault(entry.step, []).append(float(entry.detail["seconds"]))
    return {step: round(sum(v) / len(v), 3) for step, v in sums.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--lab", default="bench")
    args = parser.parse_args()

    with lab_fleet(args.lab, args.hosts, args.batch) as (config, app_cfg, lab_seconds):
        install_s, _, rc1 = release(config, "1.0.0")
        if rc1 != 0:
            subprocess.run([sys.executable, "-m", "graylift", "-c", str(config), "status", "1"])
        wall, rss_mib, rc2 = release(config, "2.0.0")
        if rc2 != 0:
            subprocess.run([sys.executable, "-m", "graylift", "-c", str(config), "status", "2"])
        gl = Graylift(config)
        rid = gl.store.list_releases(APP, ENV, limit=1)[0].id
        limit, engine_s, batches = physical_limit(gl, rid, app_cfg)
        steps = step_seconds(gl, rid)
        gl.close()
    result = {
        "bench": "release_overhead",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}",
        "hosts": args.hosts, "batch": args.batch, "lab_up_seconds": round(lab_seconds, 2),
        "install_seconds": round(install_s, 2),
        "release_wall_seconds": round(wall, 2), "release_engine_seconds": round(engine_s, 2),
        "physical_limit_seconds": round(limit, 2), "ratio": round(engine_s / limit, 3) if limit else None,
        "controller_peak_rss_mib": round(rss_mib, 1), "ok": rc1 == 0 and rc2 == 0,
        "mean_step_seconds": steps, "batches": batches,
    }
    print(json.dumps(result, indent=2))
    history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    history.append(result)
    RESULTS.write_text(json.dumps(history, indent=2) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
