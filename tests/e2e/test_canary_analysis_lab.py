"""Canary analysis on a real lab: a real Prometheus scraping every host's pyapp each second, load through
HAProxy during each release, and the release engine judging the canary against a fresh baseline.

One module, one fleet, in order: a version answering 2% of requests with 500 is rolled back, one 30% slower
is rolled back, a good one is promoted, and Prometheus stopped mid-bake halts the release without promoting.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from graylift.core.state import HostState, ReleaseState
from graylift.lab import LabInfo
from graylift.lab.load import BackgroundLoad
from graylift.lab.services import stop_pidfile
from graylift.store import ReleaseRecord
from tests.e2e.conftest import Deploy, lab_fixture, make_deploy, settled, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.slow]

APP = "pyapp"
lab = lab_fixture(APP, hosts=6, name=f"can{os.getpid() % 10000}", prometheus=True)

ANALYSIS = {"interval": 4, "step": 2, "min_samples": 6, "min_requests": 300, "max_query_errors": 3,
            "max_extensions": 1}


@pytest.fixture(scope="module")
def deploy(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Deploy:
    """One state db for the module; the fleet brought to 1.0.0 (a first install: no analysis, said so)."""
    canary = {"group": "beta", "count": 1, "bake": 20, "promote": "auto",
              "analysis": {"prometheus": lab.prometheus_url, **ANALYSIS}}
    d = make_deploy(lab, APP, tmp_path_factory.mktemp("canary-analysis"), canary=canary, batch={"size": 2})
    first = d.release("1.0.0")
    settled(first, ReleaseState.SUCCEEDED)
    assert first.plan["analysis"] == {"skipped": "first install: no old version to compare the canaries with"}
    return d


@pytest.fixture
def load(lab: LabInfo) -> Iterator[BackgroundLoad]:
    with BackgroundLoad(lab.apps[APP].frontend_url + "/work", connections=8) as running:
        yield running


def analysis_entries(d: Deploy, rec: ReleaseRecord) -> list[tuple[str, dict[str, object]]]:
    return [(e.event, e.detail) for e in d.gl.store.journal_entries(rec.id) if e.step == "analysis"]


def canary_and_baseline(rec: ReleaseRecord) -> tuple[list[str], list[str]]:
    return list(rec.plan["batches"][0]["hosts"]), list(rec.plan["analysis"]["baseline"]["hosts"])


def test_errors_2pct_rolled_back(deploy: Deploy, load: BackgroundLoad) -> None:
    before = set(deploy.versions().values())
    rec = deploy.release("5.0.0")
    settled(rec, ReleaseState.ROLLED_BACK)
    assert "canary analysis failed" in rec.message and "errors:" in rec.message, rec.message
    assert set(deploy.versions().values()) == before
    canaries, baseline = canary_and_baseline(rec)
    assert len(baseline) == len(canaries) == 1 and not set(baseline) & set(canaries)
    assert rec.plan["analysis"]["baseline"]["restarted"] is True
    verdicts = [event for event, _ in analysis_entries(deploy, rec)]
    assert verdicts[-1] == "fail" and "pass" not in verdicts
    latest = rec.plan["analysis"]["latest"]
    errors = next(m for m in latest["metrics"] if m["name"] == "errors")
    assert errors["verdict"] == "fail" and errors["p_value"] < 0.01 and errors["canary"] > 0.005
    assert 'code=~"5.."' in errors["query"] and canaries[0] in errors["query"]
    deploy.assert_fleet_clean()

    shown = deploy.cli("status", str(rec.id), check=True).stdout
    assert f"canary analysis: baseline {baseline[0]} (restarted with the canaries)" in shown, shown
    assert "errors: fail" in shown
    as_json = json.loads(deploy.cli("status", str(rec.id), "-o", "json", check=True).stdout)
    assert as_json["release"]["analysis"]["latest"]["verdict"] == "fail"


def test_30pct_slower_rolled_back(deploy: Deploy, load: BackgroundLoad) -> None:
    before = set(deploy.versions().values())
    rec = deploy.release("6.0.0")
    settled(rec, ReleaseState.ROLLED_BACK)
    assert "canary analysis failed" in rec.message and "latency_p50" in rec.message, rec.message
    assert set(deploy.versions().values()) == before
    p50 = next(m for m in rec.plan["analysis"]["latest"]["metrics"] if m["name"] == "latency_p50")
    assert p50["verdict"] == "fail" and p50["p_value"] < 0.01 and 1.15 < p50["ratio"] < 1.5, p50
    deploy.assert_fleet_clean()


def test_good_version_promoted(deploy: Deploy, load: BackgroundLoad) -> None:
    rec = deploy.release("2.0.0")
    settled(rec, ReleaseState.SUCCEEDED)
    assert set(deploy.versions().values()) == {"2.0.0"}
    latest = rec.plan["analysis"]["latest"]
    assert latest["verdict"] == "pass" and latest["final"] is True, latest
    assert {m["verdict"] for m in latest["metrics"]} == {"pass"}
    assert all(min(m["n"]) >= ANALYSIS["min_samples"] for m in latest["metrics"])
    verdicts = [event for event, _ in analysis_entries(deploy, rec)]
    assert verdicts.count("pass") == 1 and verdicts[-1] == "pass"  # early judgements never pass
    deploy.assert_fleet_clean()


def test_prometheus_stopped_mid_bake_halts_without_promoting(deploy: Deploy, lab: LabInfo,
                                                             load: BackgroundLoad) -> None:
    before = deploy.versions()
    result: dict[str, ReleaseRecord] = {}
    driver = threading.Thread(target=lambda: result.update(rec=deploy.release("1.1.0")))
    driver.start()
    wait_until(lambda: any(r.state is ReleaseState.BAKING for r in deploy.gl.store.active_releases()), 120,
               "the canary bake")
    stop_pidfile(Path(lab.pidfiles["prometheus"]))
    driver.join(180)
    assert not driver.is_alive()
    rec = result["rec"]
    settled(rec, ReleaseState.PAUSED)
    assert "Prometheus" in rec.message and "never promoted" in rec.message, rec.message
    verdicts = [event for event, _ in analysis_entries(deploy, rec)]
    assert verdicts[-ANALYSIS["max_query_errors"]:] == ["error", "error", "halt"], verdicts
    canaries, _ = canary_and_baseline(rec)
    runs = {r.host: r for r in deploy.gl.store.host_runs(rec.id)}
    assert all(runs[h].state is HostState.PENDING for h in runs if h not in canaries)
    assert {h: v for h, v in deploy.versions().items() if h not in canaries} == \
        {h: v for h, v in before.items() if h not in canaries}
    deploy.assert_fleet_clean()
