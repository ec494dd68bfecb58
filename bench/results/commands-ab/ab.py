"""A/B whole releases on a held lab: the working tree against an old checkout on PYTHONPATH, interleaved.

    OLD_SRC=/path/to/old/src .venv/bin/python bench/results/commands-ab/ab.py CONFIG ROUNDS OUT.json

CONFIG is the graylift.yaml of a lab held up by ``bench/release_overhead.py: lab_fleet("pf", 200, 20)``. Each
round measures the reference (``bench/scale.py: reference``) and releases with each code (new first in odd
rounds), ``releases/<v>`` removed from every host first so that the pre-stage phase stages it again.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BENCH))
from scale import reference  # noqa: E402

HOSTS = Path("/var/lib/graylift-lab/pf/hosts")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def current() -> str:
    return os.readlink(HOSTS / "pyapp-001/srv/pyapp/current").split("/")[-1]


def run(config: Path, code: str, version: str) -> dict[str, object]:
    env = dict(os.environ)
    if code == "old":
        env["PYTHONPATH"] = os.environ["OLD_SRC"]
    for host in HOSTS.iterdir():
        shutil.rmtree(host / "srv/pyapp/releases" / version, ignore_errors=True)
    cpu0, started = cpu(), time.monotonic()
    done = subprocess.run([sys.executable, "-m", "graylift", "-c", str(config), "release", "pyapp", version,
                           "--env", "prod", "--wait"], env=env, capture_output=True, text=True)
    wall, used = time.monotonic() - started, cpu() - cpu0
    with sqlite3.connect(config.parent / "state.db") as db:
        rid = db.execute("select max(id) from releases").fetchone()[0]
        summary = db.execute("select detail from journal where release_id=? and step='prestage' and event='done'",
                             (rid,)).fetchone()
        state = db.execute("select state from releases where id=?", (rid,)).fetchone()[0]
    pre = json.loads(summary[0]) if summary else {}
    return {"code": code, "version": version, "rc": done.returncode, "state": state, "wall": round(wall, 2),
            "cpu": round(used, 2), "prestage_s": pre.get("seconds"), "from_repo": len(pre.get("from_repository", [])),
            "from_peers": pre.get("from_peers")}


def main() -> int:
    config, rounds, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    results = []
    for number in range(1, rounds + 1):
        ref = reference("pf")
        for code in ("new", "old") if number % 2 else ("old", "new"):
            version = "1.1.0" if current() == "2.0.0" else "2.0.0"
            row = run(config, code, version) | {"round": number, "ref": ref}
            print(row, flush=True)
            results.append(row)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
