"""Results of bench/vs_peers.py: graylift's journal summed up, the ratios, the markdown table, the plot."""

from __future__ import annotations

import statistics
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PLOT = Path(__file__).with_name("plot.py")


def graylift_journal(config: Path, app: str, env: str, started: float, ended: float,
                     release_id: int | None = None) -> dict[str, Any]:
    """Where graylift's last release of ``app`` spent its time, from its journal: per step mean/max seconds
    over the hosts, each batch's seconds, the span from the first journal entry to the last, and the seconds
    of the ``graylift`` process (started / ended: epoch seconds) before the release's record and after its
    last journal entry (start-up, preflight, the final report, exit). ``release_id``: that one, not the last."""
    from graylift.service import Graylift

    gl = Graylift(config)
    try:
        rec = gl.store.get_release(release_id) if release_id else gl.store.list_releases(app, env, limit=1)[0]
        entries = gl.store.journal_entries(rec.id)
    finally:
        gl.close()
    steps: dict[str, list[float]] = defaultdict(list)
    per_host: dict[str, dict[str, float]] = defaultdict(dict)
    begun: dict[str, Any] = {}
    batches = []
    for e in entries:
        if e.host is not None and e.event == "done" and "seconds" in e.detail:
            steps[e.step].append(float(e.detail["seconds"]))
            per_host[e.host][e.step] = float(e.detail["seconds"])
        elif e.host is None and e.event == "begin":
            begun[e.step] = e
        elif e.host is None and e.event == "done" and e.step in begun:
            start = begun.pop(e.step)
            batches.append({"batch": e.step, "hosts": start.detail.get("hosts", []),
                            "seconds": round((e.at - start.at).total_seconds(), 3)})
    return {"release": rec.id, "state": str(rec.state.value),
            "before_record": round(_epoch(rec.created_at) - started, 3),
            "after_last_entry": round(ended - _epoch(entries[-1].at), 3) if entries else None,
            "span": round((entries[-1].at - entries[0].at).total_seconds(), 3) if entries else 0.0,
            "own_waits_limit": round(own_waits_limit(batches, per_host), 3),
            "steps": {s: {"mean": round(sum(v) / len(v), 3), "max": round(max(v), 3)} for s, v in steps.items()},
            "batches": batches}


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def own_waits_limit(batches: list[dict[str, Any]], per_host: dict[str, dict[str, float]]) -> float:
    """The physical-limit formula over graylift's own journaled waits in the same run: per batch, the max over
    its hosts of take_out + quiet (the drain) + stop + start + health (start to healthy)."""
    waits = ("take_out", "quiet", "stop", "start", "health")
    return sum(max((sum(per_host.get(h, {}).get(s, 0.0) for s in waits) for h in b["hosts"]), default=0.0)
               for b in batches)


def fleet_result(app: str, hosts: int, batches: list[list[str]], limits: list[dict[str, Any]],
                 runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run's ratio to the physical limit of its own round (``limits[run["round"]]``), the rollback /
    release ratio (median over the rounds), and per tool and kind the medians over the rounds."""
    for run in runs:
        seconds = limits[run.get("round", 0)].get("seconds")
        run["ratio"] = round(run["wall"] / seconds, 3) if seconds else None
    rollbacks = []
    for number in range(len(limits)):
        walls = {(r["tool"], r["kind"]): r["wall"] for r in runs if r.get("round", 0) == number}
        release, rollback = walls.get(("graylift", "release")), walls.get(("graylift", "rollback"))
        if release and rollback:
            rollbacks.append(rollback / release)
    measured = [limit["seconds"] for limit in limits if limit.get("seconds")]
    return {"app": app, "hosts": hosts, "batch_plan": [len(b) for b in batches], "rounds": len(limits),
            "limit_seconds": round(statistics.median(measured), 3) if measured else None,
            "limits_seconds": [limit.get("seconds") for limit in limits],
            "rollback_over_release": round(statistics.median(rollbacks), 3) if rollbacks else None,
            "limit_hosts": limits[-1].get("hosts", {}), "summary": summary(runs), "runs": runs}


def summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (tool, kind), in the order first run: how many runs, the median wall, ratio and CPU per host, the
    lowest and highest ratio, and the failed requests of all of them."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["tool"], run["kind"]), []).append(run)
    rows = []
    for (tool, kind), group in groups.items():
        ratios = [r["ratio"] for r in group if r.get("ratio")]
        rows.append({"tool": tool, "kind": kind, "runs": len(group),
                     "wall": round(statistics.median(r["wall"] for r in group), 3),
                     "ratio": round(statistics.median(ratios), 3) if ratios else None,
                     "ratio_range": [min(ratios), max(ratios)] if ratios else None,
                     "cpu_per_host": round(statistics.median(r["cpu_per_host"] for r in group), 4),
                     "failed": sum(r["failed"] for r in group)})
    return rows


def markdown(document: dict[str, Any]) -> str:
    lines = ["| fleet | batches | tool | run | wall s | / limit | CPU s | CPU s / host | requests | failed |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for f in document["fleets"]:
        fleet = f"{f['app']}:{f['hosts']}"
        plan = "+".join(map(str, f["batch_plan"]))
        lines.append(f"| {fleet} | {plan} | physical limit | | {f['limit_seconds'] or 0:.1f} | 1.00 | | | | |")
        for r in f["runs"]:
            ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
            number = f" (round {r['round'] + 1})" if f.get("rounds", 1) > 1 else ""
            lines.append(f"| {fleet} | {plan} | {r['tool']} | {r['kind']} {r['from']}→{r['to']}{number} | "
                         f"{r['wall']:.1f} | {ratio} | {r['cpu']:.2f} | {r['cpu_per_host']:.3f} | {r['requests']} | "
                         f"{r['failed']} |")
        if f["rollback_over_release"]:
            lines.append(f"\n{fleet}: graylift rollback / release = {f['rollback_over_release']:.2f}\n")
    if any(f.get("rounds", 1) > 1 for f in document["fleets"]):
        lines += ["", "| fleet | tool | runs | median wall s | median / limit (lowest-highest) | median CPU s / host "
                  "| failed |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for f in document["fleets"]:
            for row in f.get("summary", []):
                low, high = row["ratio_range"] or (0, 0)
                ratio = f"{row['ratio']:.2f} ({low:.2f}-{high:.2f})" if row["ratio"] else "-"
                lines.append(f"| {f['app']}:{f['hosts']} | {row['tool']} {row['kind']} | {row['runs']} | "
                             f"{row['wall']:.1f} | {ratio} | {row['cpu_per_host']:.3f} | {row['failed']} |")
    return "\n".join(lines)


def plot(results: Path, png: Path, peers_venv: Path) -> str:
    """Draw the PNG with the peers venv's matplotlib (not a project dependency)."""
    python = peers_venv / "bin" / "python"
    if not python.exists():
        return f"plot skipped: no {python} (make the peers venv as bench/vs_peers.py says)"
    done = subprocess.run([str(python), str(PLOT), str(results), str(png)], capture_output=True, text=True,
                          check=False)
    return f"plot: {png}" if done.returncode == 0 else f"plot failed: {done.stderr.strip()[-500:]}"
