"""Results of bench/vs_peers.py: graylift's journal summed up, the ratios, the markdown table, the plot."""

from __future__ import annotations

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


def fleet_result(app: str, hosts: int, batches: list[list[str]], limit: dict[str, Any],
                 runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Add each run's ratio to the physical limit, and the rollback / release ratio."""
    seconds = limit.get("seconds")
    for run in runs:
        run["ratio"] = round(run["wall"] / seconds, 3) if seconds else None
    walls = {(r["tool"], r["kind"]): r["wall"] for r in runs}
    release, rollback = walls.get(("graylift", "release")), walls.get(("graylift", "rollback"))
    return {"app": app, "hosts": hosts, "batch_plan": [len(b) for b in batches], "limit_seconds": seconds,
            "rollback_over_release": round(rollback / release, 3) if release and rollback else None,
            "limit_hosts": limit.get("hosts", {}), "runs": runs}


def markdown(document: dict[str, Any]) -> str:
    lines = ["| fleet | batches | tool | run | wall s | / limit | CPU s | CPU s / host | requests | failed |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for f in document["fleets"]:
        fleet = f"{f['app']}:{f['hosts']}"
        plan = "+".join(map(str, f["batch_plan"]))
        lines.append(f"| {fleet} | {plan} | physical limit | | {f['limit_seconds'] or 0:.1f} | 1.00 | | | | |")
        for r in f["runs"]:
            ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
            lines.append(f"| {fleet} | {plan} | {r['tool']} | {r['kind']} {r['from']}→{r['to']} | {r['wall']:.1f} | "
                         f"{ratio} | {r['cpu']:.2f} | {r['cpu_per_host']:.3f} | {r['requests']} | {r['failed']} |")
        if f["rollback_over_release"]:
            lines.append(f"\n{fleet}: graylift rollback / release = {f['rollback_over_release']:.2f}\n")
    return "\n".join(lines)


def plot(results: Path, png: Path, peers_venv: Path) -> str:
    """Draw the PNG with the peers venv's matplotlib (not a project dependency)."""
    python = peers_venv / "bin" / "python"
    if not python.exists():
        return f"plot skipped: no {python} (make the peers venv as bench/vs_peers.py says)"
    done = subprocess.run([str(python), str(PLOT), str(results), str(png)], capture_output=True, text=True,
                          check=False)
    return f"plot: {png}" if done.returncode == 0 else f"plot failed: {done.stderr.strip()[-500:]}"
