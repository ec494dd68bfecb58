#!/usr/bin/env python3
"""How often does the canary analysis fail a good canary? A/A judgements on a real lab.

A 6-host lab with its Prometheus (scraping each host's pyapp every second) runs pyapp 1.0.0 on every host,
installed by graylift, under steady load through HAProxy to ``/work``. Each round restarts three disjoint
pairs of hosts at the same moment (one host of a pair plays the canary, the other the baseline, exactly as a
bake's fresh baseline), then replays a bake of ``--bake`` seconds over the recorded metrics: the engine's own
:func:`graylift.engine.analysis.collect` and :func:`graylift.core.analysis.judge`, one judgement every
``--interval`` seconds over the growing window, the last one final. A bake whose judgements include a
``fail`` is a false alarm (the two hosts run the same build); one whose final judgement is not ``pass`` would
have been extended. The settings are the lab tests' (tests/e2e/test_canary_analysis_lab.py).

    sudo .venv/bin/python bench/canary_aa.py              # 8 rounds x 3 pairs = 24 A/A bakes
    sudo .venv/bin/python bench/canary_aa.py --rounds 12

Figures go to bench/results/canary_aa.json (and are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from graylift.adapters.inventory.hostfile import load_hosts_file
from graylift.adapters.monitoring.prometheus import PrometheusMetrics
from graylift.core.analysis import AnalysisSettings, Verdict, judge
from graylift.core.model import Host
from graylift.engine.analysis import collect
from graylift.lab import host_exec, lab_down, lab_up
from graylift.lab.load import BackgroundLoad
from graylift.service import Graylift

RESULTS = Path(__file__).with_name("results") / "canary_aa.json"
APP = "pyapp"
SETTINGS = AnalysisSettings(interval=4, step=2, min_samples=6, min_requests=300)


def install(info_config: str, hosts_file: str, workdir: Path) -> None:
    data = yaml.safe_load(Path(info_config).read_text())
    data["state"] = f"sqlite:///{workdir}/state.db"
    config = workdir / "graylift.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    gl = Graylift(config)
    gl.store.replace_hosts(APP, "prod", load_hosts_file(Path(hosts_file)))
    rec = asyncio.run(gl.start_release(APP, "prod", "1.0.0", started_by="bench"))
    done = asyncio.run(gl.engine().drive(rec.id))
    if done.state.value != "succeeded":
        raise SystemExit(f"installing 1.0.0 failed: {done.message}")


async def replay(metrics: PrometheusMetrics, canary: Host, baseline: Host, start: datetime,
                 bake: float) -> tuple[list[str], list[dict[str, object]]]:
    """The verdicts of a bake's judgements, and the final one's metrics (n, p-value, ratio)."""
    verdicts: list[str] = []
    final_metrics: list[dict[str, object]] = []
    t = SETTINGS.interval
    while t <= bake + 1e-9:
        final = t + SETTINGS.interval > bake + 1e-9
        window = await collect(metrics, SETTINGS, [canary], [baseline], start, start + timedelta(seconds=t))
        got = judge(window, SETTINGS, final=final)
        verdicts.append(got.verdict.value)
        final_metrics = [{"name": m.name, "n": list(m.n), "p_value": m.p_value, "ratio": m.ratio}
                         for m in got.metrics]
        t += SETTINGS.interval
    return verdicts, final_metrics


def summary(bakes: list[dict[str, object]]) -> dict[str, dict[str, float | None]]:
    """Per metric over the final judgements: the smallest p-value, the largest ratio, the median n."""
    out: dict[str, dict[str, float | None]] = {}
    metrics = [m for b in bakes for m in b["final"]]  # type: ignore[attr-defined]
    for name in sorted({m["name"] for m in metrics}):
        mine = [m for m in metrics if m["name"] == name]
        ps = [m["p_value"] for m in mine if m["p_value"] is not None]
        ratios = [m["ratio"] for m in mine if m["ratio"] is not None]
        out[name] = {"min_p_value": min(ps) if ps else None, "max_ratio": max(ratios) if ratios else None,
                     "median_n": statistics.median(min(m["n"]) for m in mine)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--bake", type=float, default=20.0)
    args = parser.parse_args()
    name = "canaryaa"
    lab_down(name)
    info = lab_up(name, hosts=6, apps=(APP,), prometheus=True)
    bakes: list[dict[str, object]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="graylift-aa-") as tmp:
            install(info.config_path, info.hosts_file, Path(tmp))
        hosts = [Host(name=h.name, address=h.address) for h in info.hosts]
        pairs = [(hosts[i], hosts[i + 1]) for i in range(0, len(hosts) - 1, 2)]
        metrics = PrometheusMetrics(info.prometheus_url)
        restart = "sh /srv/pyapp/current/bin/stop && sh /srv/pyapp/current/bin/start"
        with BackgroundLoad(info.apps[APP].frontend_url + "/work", connections=8) as load:
            for number in range(args.rounds):
                for h in hosts:  # every host of a pair restarted at the same moment, as a bake's fresh baseline
                    done = host_exec(info, h.name, restart, timeout=60)
                    if done.returncode != 0:
                        raise SystemExit(f"restarting {h.name} failed: {done.stderr}")
                start = datetime.now(UTC)
                time.sleep(args.bake + 2 * SETTINGS.step)  # the window, plus scrapes to land
                for first, second in pairs:
                    canary, baseline = (first, second) if number % 2 == 0 else (second, first)
                    verdicts, final = asyncio.run(replay(metrics, canary, baseline, start, args.bake))
                    bakes.append({"round": number, "canary": canary.name, "baseline": baseline.name,
                                  "verdicts": verdicts, "final": final})
                    print(f"round {number}: {canary.name} vs {baseline.name}: {' '.join(verdicts)}", flush=True)
            report = load.stop()
    finally:
        lab_down(name)
    false_alarms = sum(1 for b in bakes if Verdict.FAIL.value in b["verdicts"])  # type: ignore[operator]
    passed = sum(1 for b in bakes if b["verdicts"][-1] == Verdict.PASS.value)  # type: ignore[index]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
        "command": "sudo .venv/bin/python bench/canary_aa.py" + (f" --rounds {args.rounds}" if args.rounds != 8
                                                                   else ""),
        "bake_seconds": args.bake, "settings": {k: v for k, v in SETTINGS.__dict__.items() if k != "queries"},
        "aa_bakes": len(bakes), "false_alarms": false_alarms, "false_alarm_rate": round(false_alarms / len(bakes), 4),
        "final_pass": passed, "final_not_pass": len(bakes) - passed,
        "final_metrics": summary(bakes),
        "load": {"sent": report.sent, "non_2xx": report.non_2xx, "errors": report.errors,
                 "note": "non-2xx are HAProxy's answers while the bench restarts hosts without draining them"},
        "bakes": bakes,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"{len(bakes)} A/A bakes: {false_alarms} false alarm(s) ({result['false_alarm_rate']:.1%}), "
          f"{passed} passed at the end, {len(bakes) - passed} would have been extended")


if __name__ == "__main__":
    main()
