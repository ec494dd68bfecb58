"""``python plot.py vs_peers.json vs_peers.png``: wall time as a multiple of the physical limit, and controller
CPU per host, per tool and fleet. Runs with the peers venv's matplotlib."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TOOLS = [("graylift", "release"), ("graylift", "rollback"), ("minimal", "release"), ("pyinfra", "release"),
         ("ansible", "release")]


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    fleets = data["fleets"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8))
    width = 0.8 / len(TOOLS)
    for i, (tool, kind) in enumerate(TOOLS):
        ratios, cpus = [], []
        for f in fleets:
            run = next((r for r in f.get("summary") or f["runs"] if r["tool"] == tool and r["kind"] == kind),
                       None)  # the medians over the rounds, or the one run of an older results file
            ratios.append(run["ratio"] or 0 if run else 0)
            cpus.append(run["cpu_per_host"] if run else 0)
        xs = [x + i * width for x in range(len(fleets))]
        label = tool if kind == "release" else f"{tool} {kind}"
        bars = top.bar(xs, ratios, width, label=label)
        top.bar_label(bars, labels=[f"{r:.1f}" if r else "" for r in ratios], fontsize=7)
        bottom.bar(xs, cpus, width, label=label)
    ticks = [x + 0.4 - width / 2 for x in range(len(fleets))]
    names = [f"{f['app']}:{f['hosts']}\n" + (f"limit {f['limit_seconds']:.1f}s" if f["limit_seconds"]
                                            else "limit not measured") for f in fleets]
    for ax in (top, bottom):
        ax.set_xticks(ticks, names)
    top.axhline(1.0, color="black", linewidth=0.8)
    top.axhline(1.05, color="green", linestyle="--", linewidth=0.8, label="target 1.05x")
    top.set_ylabel("wall time / physical limit")
    top.legend(fontsize=8)
    bottom.axhline(0.05, color="green", linestyle="--", linewidth=0.8, label="target 0.05 s/host")
    bottom.set_ylabel("controller CPU s per host")
    bottom.legend(fontsize=8)
    fig.suptitle(f"Same release, same fleet, same load ({data['date']}, {data['cpus']} CPUs)")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
