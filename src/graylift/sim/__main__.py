"""``python -m graylift.sim --seeds 10000 [--first 1] [--jobs 2]``: run seeds, print the counts, and for each
failing seed the shortest scenario that still fails (a failing seed replays exactly)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from graylift.sim.run import run_scenario, shrink
from graylift.sim.scenario import generate


def _chunk(seeds: list[int]) -> tuple[int, int, list[tuple[int, list[str]]]]:
    ops, failures = 0, []
    for seed in seeds:
        outcome = run_scenario(generate(seed))
        ops += outcome.ops
        if not outcome.ok:
            failures.append((seed, outcome.violations))
    return len(seeds), ops, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simulate", description=__doc__)
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, help="replay one seed, with its log")
    parser.add_argument("--json", type=Path, help="write the counts to this file")
    args = parser.parse_args(argv)
    if args.seed is not None:
        outcome = run_scenario(generate(args.seed))
        print(generate(args.seed).describe())
        print("\n".join(outcome.log))
        print("violations:", *outcome.violations, sep="\n  ") if outcome.violations else print("no violation")
        return 1 if outcome.violations else 0
    seeds = list(range(args.first, args.first + args.seeds))
    started = time.monotonic()
    chunks = [seeds[i::max(1, args.jobs * 8)] for i in range(max(1, args.jobs * 8))]
    runs = ops = 0
    failures: list[tuple[int, list[str]]] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for n, o, f in pool.map(_chunk, chunks):
            runs, ops, failures = runs + n, ops + o, failures + f
    seconds = time.monotonic() - started
    print(f"{runs} seeds ({args.first}..{args.first + args.seeds - 1}), {ops} await points, "
          f"{len(failures)} with a violation, {seconds:.1f}s ({args.jobs} jobs)")
    for seed, violations in sorted(failures)[:5]:
        print(f"seed {seed}: {violations[0]}")
        print(shrink(generate(seed)).describe())
    if args.json:
        args.json.write_text(json.dumps({"seeds": runs, "first": args.first, "await_points": ops,
                                         "violations": len(failures), "failing_seeds": sorted(s for s, _ in failures),
                                         "seconds": round(seconds, 1), "jobs": args.jobs}, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
