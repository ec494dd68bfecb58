"""A/B under load on a held vs_peers lab: graylift of the working tree ("new") against an old checkout on
PYTHONPATH ("old"), with the minimal driver (the physical limit) in every round, interleaved.

    OLD_SRC=<worktree>/src .venv/bin/python bench/results/ping-ab/ab.py LAB APP HOSTS ROUNDS OUT.json

LAB is a lab held up with ``graylift.lab.lab_up`` and a ``bench/vs_peers.py: Fleet`` workdir at
/var/tmp/prof-<APP><HOSTS> (its graylift.yaml and state.db, the app installed). Each run is vs_peers' own:
the hosts' other release dirs removed, wrk through HAProxy, wall and CPU of the process tree.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BENCH))
import vs_peers as vp  # noqa: E402
from peers import report  # noqa: E402

from graylift.lab.info import LabInfo  # noqa: E402


def main() -> int:
    lab, app, hosts, rounds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    workdir = Path(f"/var/tmp/prof-{app}{hosts}")
    fleet = vp.Fleet(LabInfo.load(lab), app, workdir, Path("/var/tmp/graylift-peers"))
    rows = []
    for number in range(rounds):
        order = ["minimal", "new", "old"] if number % 2 == 0 else ["old", "new", "minimal"]
        for code in order:
            current = os.readlink(fleet.host_dir(fleet.names[0]) / "current").rpartition("/")[2]
            target = vp.VERSIONS[1] if current == vp.VERSIONS[0] else vp.VERSIONS[0]
            fleet.reset()
            log = workdir / f"ab-{code}.log"
            limit: dict[str, object] = {}
            if code == "minimal":
                call = partial(vp.run_minimal, fleet, target, log, limit)
            else:
                env = {"PYTHONPATH": os.environ["OLD_SRC"]} if code == "old" else {}
                call = partial(vp.run_measured, vp.graylift_cmd(fleet, "release", app, target, "--env", vp.ENV,
                                                                "--wait"), log, env)
            (wall, cpu, rc), loaded = vp.under_load(fleet, call)
            row = {"round": number, "code": code, "to": target, "wall": round(wall, 3), "cpu": round(cpu, 3),
                   "exit": rc, "requests": loaded.sent, "failed": loaded.non_2xx + loaded.errors,
                   "problems": fleet.problems(target)[:3], "limit": limit.get("seconds")}
            if code != "minimal":
                process = json.loads(log.with_suffix(".cpu.json").read_text())
                journal = report.graylift_journal(fleet.config, app, vp.ENV, process["started_at"],
                                                  process["ended_at"])
                row |= {"before_record": journal.get("before_record"), "span": journal.get("span"),
                        "precheck_mean": journal.get("steps", {}).get("precheck", {}).get("mean"),
                        "batches": [b["seconds"] for b in journal.get("batches", [])]}
            print(row, flush=True)
            rows.append(row)
    out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
