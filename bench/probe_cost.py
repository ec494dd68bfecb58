#!/usr/bin/env python3
"""What a health check's process probe costs the host: ``pgrep -A -f`` against ``pgrep -f``.

A health wait goes to the host as a script on stdin (``sh -s``), one attempt per pass, the process probe first.
Until 2026-12-07 its process probe was ``pgrep -A -f`` (-A: skip pgrep's own ancestors, whose command lines
might hold the pattern); on stdin no process of graylift's carries the pattern, so it is now plain ``pgrep -f``.
This measures, on this machine's own PID namespace (every process the machine runs: a host with many processes),
the CPU (user + system of the children, RUSAGE_CHILDREN) of one attempt of each script as HostWait writes it,
interleaved over ``--rounds``, beside the reference: reading every process's command line once (``cat
/proc/[0-9]*/cmdline``), the floor of any look for a process by its command line.

    .venv/bin/python bench/probe_cost.py                       # 30 rounds, bench/results/probe_cost.json
    .venv/bin/python bench/probe_cost.py --rounds 10 --results /tmp/probe_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from graylift.adapters.health import HostWait, ProcessProbe

RESULTS = Path(__file__).with_name("results") / "probe_cost.json"
PATTERN = "graylift-bench-no-such-process"


class WithAncestorsSkipped(ProcessProbe):
    """The probe as the wait sent it before: ``pgrep -A -f`` (with the fallback for an older pgrep)."""

    @property
    def in_script(self) -> str:
        return self.command


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_of(script: str) -> float:
    before = children_cpu()
    subprocess.run(["sh", "-s"], input=script, text=True, capture_output=True, check=False)
    return children_cpu() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    scripts = {
        "pgrep -A -f (before)": HostWait.of([WithAncestorsSkipped(PATTERN)], retries=1, interval=0),
        "pgrep -f (now)": HostWait.of([ProcessProbe(PATTERN)], retries=1, interval=0),
    }
    texts = {name: wait.script for name, wait in scripts.items() if wait is not None}
    texts["reference: cat /proc/[0-9]*/cmdline"] = "cat /proc/[0-9]*/cmdline > /dev/null 2>&1\n"
    seconds: dict[str, list[float]] = {name: [] for name in texts}
    processes = []
    for _ in range(args.rounds):
        processes.append(len(list(Path("/proc").glob("[0-9]*"))))
        for name, text in texts.items():
            seconds[name].append(cpu_of(text))
    reference = statistics.median(seconds["reference: cat /proc/[0-9]*/cmdline"])
    rows = {name: {"median_ms": round(statistics.median(v) * 1000, 2), "min_ms": round(min(v) * 1000, 2),
                   "max_ms": round(max(v) * 1000, 2), "over_reference": round(statistics.median(v) / reference, 2)}
            for name, v in seconds.items()}
    result = {"bench": "probe_cost", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {platform.python_version()}", "rounds": args.rounds,
              "processes": {"min": min(processes), "max": max(processes)}, "cpu_per_attempt": rows}
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{min(processes)}-{max(processes)} processes; CPU of one attempt (median of {args.rounds}, ms):")
    for name, row in rows.items():
        print(f"  {name}: {row['median_ms']} (min {row['min_ms']}, max {row['max_ms']}), "
              f"{row['over_reference']}x the reference")
    print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
