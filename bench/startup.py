#!/usr/bin/env python3
"""What does starting the `graylift` command cost, beside the tools people know?

CPU seconds (user + system, of the process and everything it starts: resource.getrusage(RUSAGE_CHILDREN)) of
`graylift --help`, `graylift status` (over a SQLite state database with one app, made beforehand) and the imports
of `graylift release` (every backend module, the engine, the service), and as references measured in the same
run: `python -c pass` (the interpreter alone), `python -c 'import sqlalchemy'` (what any command reading the
state database pays before doing anything), the import of the libraries a release cannot run without
(asyncssh, httpx, SQLAlchemy with sqlite3, pydantic's BaseModel, PyYAML, Typer, Rich: the floor of its
start-up), `ansible --help` and `pyinfra --help` when they are installed in the same environment or on PATH
(`pip install ansible-core pyinfra`).
Each command runs --runs times after one warm-up run (bytecode caches written); the median is kept.

    .venv/bin/python bench/startup.py              # 9 runs each
    .venv/bin/python bench/startup.py --runs 21

Figures go to bench/results/startup.json (and are printed), with each graylift figure as a ratio to each
reference: a speed claim about graylift is such a ratio, never a bare number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "startup.json"
BIN = Path(sys.executable).parent
CONFIG = """
state: sqlite:///state.db
apps:
  order-service:
    package: {type: tar.gz, url: "http://127.0.0.1:9/{app}-{version}.{ext}", sha256_url: "{url}.sha256"}
    deploy: {dir: /srv/order}
    commands: {start: "sh {current}/bin/start", stop: "sh {current}/bin/stop"}
    health: {tcp_port: 8080}
"""

RELEASE_IMPORTS = "import graylift.cli.releases, graylift.service, graylift.wiring, graylift.engine.loop"
LIBRARIES = "import asyncssh, httpx, sqlalchemy, sqlite3, yaml, typer, rich; from pydantic import BaseModel"


def cpu_seconds(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_of(argv: list[str], runs: int, cwd: Path, env: dict[str, str]) -> dict[str, object]:
    cpu_seconds(argv, cwd, env)  # warm-up: bytecode caches, page cache
    samples = [cpu_seconds(argv, cwd, env) for _ in range(runs)]
    return {"command": " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv)),
            "median_cpu_seconds": round(statistics.median(samples), 4),
            "min_cpu_seconds": round(min(samples), 4), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "graylift.yaml").write_text(textwrap.dedent(CONFIG).lstrip())
        # As a user runs it: bytecode caches written by the warm-up and used after (a PYTHONDONTWRITEBYTECODE in
        # the caller's environment would make every run compile graylift's sources again).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GRAYLIFT_") and k != "PYTHONDONTWRITEBYTECODE"} | {"HOME": str(work)}
        graylift = str(BIN / "graylift")
        subprocess.run([graylift, "status"], cwd=work, env=env, check=True, capture_output=True)  # makes the db
        measured = {"graylift --help": median_of([graylift, "--help"], args.runs, work, env),
                    "graylift status": median_of([graylift, "status"], args.runs, work, env),
                    # what `graylift release` loads before it reads its config (every backend module, the engine)
                    "graylift release's imports": median_of([sys.executable, "-c", RELEASE_IMPORTS], args.runs,
                                                            work, env)}
        references = {"python -c pass": median_of([sys.executable, "-c", "pass"], args.runs, work, env),
                      # the floor of any command that reads the state database through SQLAlchemy
                      "python -c 'import sqlalchemy'": median_of([sys.executable, "-c", "import sqlalchemy"],
                                                                 args.runs, work, env),
                      # the floor of a release's start-up: the libraries it cannot run without, nothing of graylift
                      "the libraries a release needs": median_of([sys.executable, "-W", "ignore", "-c", LIBRARIES],
                                                                 args.runs, work, env)}
        for tool in ("ansible", "pyinfra"):
            path = BIN / tool if (BIN / tool).exists() else shutil.which(tool)
            if path:
                references[f"{tool} --help"] = median_of([str(path), "--help"], args.runs, work, env)
    ratios = {name: {ref: round(float(str(m["median_cpu_seconds"])) / float(str(r["median_cpu_seconds"])), 3)
                     for ref, r in references.items() if ref != "python -c pass"}
              for name, m in measured.items()}
    result = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cpu", "graylift": measured,
              "references": references, "graylift_over_reference": ratios}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, m in {**measured, **references}.items():
        print(f"{name:30} {m['median_cpu_seconds']:.3f} s CPU (median of {m['runs']}, min {m['min_cpu_seconds']:.3f})")
    for name, by_ref in ratios.items():
        print(f"{name:30} " + ", ".join(f"{ratio:.2f}x {ref}" for ref, ratio in by_ref.items()))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
