"""Canary analysis in the real engine over folder hosts, with a fake metrics source (graylift.testing.FakeMetrics):
the baseline restarted with the canary, failures rolled back, Prometheus errors halting, too little traffic
extending the bake and then pausing, and a halted release resumed by another controller baking again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

import graylift.engine.analysis as analysis_module
from graylift.core.analysis import AnalysisSettings, OnMetricsDown
from graylift.core.flow import Step
from graylift.core.model import OnFailure, Strategy
from graylift.core.state import HostState, ReleaseState
from graylift.testing import FAKE_QUERIES, FakeMetrics
from tests.engine.conftest import APP, ENV, World
from tests.engine.test_engine_with_fakes import Crash, assert_clean, until_crash
from tests.engine.test_safety import service

SETTINGS = AnalysisSettings(queries=FAKE_QUERIES, interval=0.2, step=1, min_samples=5, min_requests=300,
                            max_query_errors=2, max_extensions=1)


def analysed_world(make_world: Callable[..., World], metrics: FakeMetrics, bake: float = 0.8,
                   **settings: object) -> World:
    strategy = Strategy(canary_group="beta", batch_size=2, bake_seconds=bake,
                        analysis=replace(SETTINGS, **settings))  # type: ignore[arg-type]
    w = make_world(strategy=strategy)
    w.fleet.runtime = replace(w.fleet.runtime, metrics=metrics)
    first = w.release("1.0.0")
    assert first.state is ReleaseState.SUCCEEDED
    assert first.plan["analysis"] == {"skipped": "first install: no old version to compare the canaries with"}
    return w


def verdicts(w: World, release_id: int) -> list[str]:
    return [e.event for e in w.store.journal_entries(release_id) if e.step == "analysis"]


def test_good_canary_promoted_after_a_final_pass(make_world: Callable[..., World]) -> None:
    w = analysed_world(make_world, FakeMetrics())
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    got = verdicts(w, rec.id)
    assert got[-1] == "pass" and got.count("pass") == 1 and set(got[:-1]) <= {"continue"}
    analysis = rec.plan["analysis"]
    assert analysis["baseline"] == {"hosts": ["h2"], "restarted": True}  # as many as canaries, not a canary
    assert analysis["latest"]["canaries"] == ["h1"] and analysis["latest"]["baseline"] == ["h2"]
    assert analysis["latest"]["fleet"] == {"requests": 4 * 2000, "errors": 0}  # the rest: recorded, not judged
    baseline_steps = [(e.event, e.detail) for e in w.store.journal_entries(rec.id, host="h2") if e.step == "baseline"]
    assert baseline_steps[0] == ("restarted", {"version": "1.0.0"})  # restarted on its own version, then released
    assert ("take_out", "h2") in w.switch.calls and w.switch.out == set() and w.silencer.muted == {}


def test_canary_with_errors_rolled_back_no_other_host_touched(make_world: Callable[..., World]) -> None:
    w = analysed_world(make_world, FakeMetrics(error_rate={"h1": 0.02}))
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.ROLLED_BACK
    assert "canary analysis failed (errors: canary 40/2000 5xx" in rec.message, rec.message
    assert {h: w.current(h) for h in ("h1", "h3", "h4", "h5", "h6")} == dict.fromkeys(("h1", "h3", "h4", "h5", "h6"),
                                                                                     "1.0.0")
    assert all(s is HostState.PENDING for h, s in w.states(rec.id).items() if h not in ("h1",))
    errors = next(m for m in rec.plan["analysis"]["latest"]["metrics"] if m["name"] == "errors")
    assert errors["verdict"] == "fail" and errors["query"] == "errors h1" and errors["n"] == [2000, 2000]


def test_slow_canary_rolled_back(make_world: Callable[..., World]) -> None:
    w = analysed_world(make_world, FakeMetrics(slow={"h1": 1.3}))
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.ROLLED_BACK
    p50 = next(m for m in rec.plan["analysis"]["latest"]["metrics"] if m["name"] == "latency_p50")
    assert p50["verdict"] == "fail" and p50["ratio"] == 1.3


def test_prometheus_down_halts_then_a_resume_bakes_again(make_world: Callable[..., World]) -> None:
    metrics = FakeMetrics(down=True)
    w = analysed_world(make_world, metrics)
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.PAUSED
    assert "canary analysis halted, never promoted: Prometheus: 2 metric queries failed in a row" in rec.message
    assert verdicts(w, rec.id) == ["error", "halt"]
    assert w.switch.out == set() and w.silencer.muted == {}
    metrics.down = False
    resumed = w.store.transition(rec.id, ReleaseState.RUNNING, "resumed")  # what `graylift resume` does
    done = w.drive(resumed.id, owner="another")
    assert done.state is ReleaseState.SUCCEEDED, done.message
    assert verdicts(w, rec.id)[-1] == "pass"


def test_prometheus_down_rolls_back_when_asked(make_world: Callable[..., World]) -> None:
    w = analysed_world(make_world, FakeMetrics(down=True), on_down=OnMetricsDown.ROLLBACK)
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.ROLLED_BACK
    assert "on_prometheus_down: rollback" in rec.message


def test_too_little_traffic_extends_then_pauses(make_world: Callable[..., World]) -> None:
    w = analysed_world(make_world, FakeMetrics(requests=100))
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.PAUSED
    assert "still inconclusive after 1 extension(s)" in rec.message and "100 requests, needs 300" in rec.message
    got = verdicts(w, rec.id)
    assert got.count("extended") == 1 and got[-1] == "inconclusive" and "pass" not in got


def test_no_data_for_the_baseline_is_not_zero(make_world: Callable[..., World]) -> None:
    w = analysed_world(make_world, FakeMetrics(silent={"h2"}))
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.PAUSED
    assert "no data for the baseline" in rec.message


# the simulated kill leaves asyncio subprocess transports to be collected after their loop closed
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_crash_mid_baseline_restart_restarts_it_on_resume(make_world: Callable[..., World],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 with the baseline host stopped and out of traffic: the next controller restarts it from the top
    (every step safe to repeat) and the release finishes with every host in traffic and unmuted."""
    w = analysed_world(make_world, FakeMetrics())
    rid = w.start("2.0.0")
    real = analysis_module.run_step
    crashed: list[str] = []

    async def crashing(step: Step, ctx: Any) -> dict[str, Any]:
        detail = await real(step, ctx)
        if step is Step.STOP and not crashed:
            crashed.append(ctx.host.name)
            raise Crash
        return detail

    monkeypatch.setattr(analysis_module, "run_step", crashing)
    until_crash(lambda: w.drive(rid))
    assert crashed == ["h2"] and w.running("h2") == "" and "h2" in w.switch.out  # left stopped and out
    rec = w.drive(rid, owner="another")
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert_clean(w, "2.0.0")
    events = [e.event for e in w.store.journal_entries(rid, host="h2") if e.step == "baseline"]
    assert events == ["restarted"]
    assert rec.plan["analysis"]["baseline"]["restarted"] is True


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_judgements_survive_a_crash_and_the_window_keeps_its_start(make_world: Callable[..., World],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    w = analysed_world(make_world, FakeMetrics(), bake=4.0)  # long enough for an early judgement on a busy machine
    rid = w.start("2.0.0")
    real = analysis_module.judge
    calls: list[bool] = []

    def judge_then_die(*args: Any, **kwargs: Any) -> Any:
        calls.append(True)
        if len(calls) == 2:
            raise Crash
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis_module, "judge", judge_then_die)
    until_crash(lambda: w.drive(rid))
    before = w.store.get_release(rid).plan["analysis"]
    assert before["judgements"] == 1 and before["latest"]["verdict"] == "continue"
    monkeypatch.setattr(analysis_module, "judge", real)
    rec = w.drive(rid, owner="another")
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    after = rec.plan["analysis"]
    assert after["started"] == before["started"] and after["judgements"] > 1
    assert verdicts(w, rid)[0] == "continue" and verdicts(w, rid)[-1] == "pass"


def test_a_baseline_that_does_not_come_back_needs_attention_and_a_retry_restarts_it(
        make_world: Callable[..., World]) -> None:
    """The baseline host (h2) is restarted on its own version and is not healthy afterwards: it is kept out of
    traffic, its alerts fire (unmuted), it is marked needing attention in the release and in the CMDB (every later
    release and `graylift doctor` see it), the release pauses naming it, and `graylift retry` restarts it and bakes
    the canaries again, from the canary phase (the cursor never jumps past the bake)."""
    w = analysed_world(make_world, FakeMetrics())
    version_file = w.folders / "h2" / "releases" / "1.0.0" / "VERSION"
    version_file.write_text("")  # h2 runs 1.0.0 now; restarted, it will not be healthy
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.PAUSED, rec.message
    assert "h2 needs_attention: the canary analysis's baseline restart on its own version failed at health" in \
        rec.message, rec.message
    run = w.store.host_run(rec.id, "h2")
    assert run.state is HostState.NEEDS_ATTENTION and "health" in (run.error or ""), run
    assert "h2" in w.switch.out and "h2" not in w.silencer.muted  # out of traffic, alerts firing
    assert "h2" in w.store.host_health(APP, ENV)  # the CMDB: later releases count it as out
    assert {h: s for h, s in w.states(rec.id).items() if h not in ("h1", "h2")} == dict.fromkeys(
        ("h3", "h4", "h5", "h6"), HostState.PENDING)  # no other host touched

    version_file.write_text("1.0.0")
    retried = service(w).retry(rec.id)
    assert retried.cursor == 0  # the canary phase again: its baseline, then its bake
    done = w.drive(rec.id, owner="another")
    assert done.state is ReleaseState.SUCCEEDED, done.message
    assert done.plan["analysis"]["baseline"]["restarted"] is True
    assert verdicts(w, rec.id)[-1] == "pass"
    assert_clean(w, "2.0.0")


def test_a_baseline_that_does_not_come_back_under_on_failure_rollback(make_world: Callable[..., World]) -> None:
    """The same failure with ``on_failure: rollback``: the canary goes back to the old version and into traffic,
    the baseline host stays out of traffic with its alerts firing (never put back unhealthy, never left muted),
    and no other host is touched."""
    w = analysed_world(make_world, FakeMetrics())
    w.fleet.runtime = replace(w.fleet.runtime, strategy=replace(w.fleet.runtime.strategy,
                                                                on_failure=OnFailure.ROLLBACK))
    (w.folders / "h2" / "releases" / "1.0.0" / "VERSION").write_text("")  # restarted, h2 will not be healthy
    rec = w.release("2.0.0")
    assert rec.state is ReleaseState.ROLLED_BACK and "h2 needs_attention: the canary analysis's baseline" in \
        rec.message, rec.message
    assert (w.current("h1"), w.running("h1")) == ("1.0.0", "1.0.0") and "h1" not in w.switch.out, rec.message
    assert "h2" in w.switch.out and w.running("h2") == ""  # its own version does not start: kept out
    assert w.silencer.muted == {}  # nothing left muted
    assert w.store.host_run(rec.id, "h2").state is HostState.NEEDS_ATTENTION
    for host in ("h3", "h4", "h5", "h6"):
        assert (w.current(host), w.running(host)) == ("1.0.0", "1.0.0") and host not in w.switch.out


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("request_", ["pause", "abort", "rollback"])
def test_a_request_after_a_crash_mid_baseline_restart_never_leaves_it_stopped(
        make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch, request_: str) -> None:
    """kill -9 with the baseline host stopped and out of traffic, then a pause, abort or rollback: the next
    controller first finishes the baseline's restart (on its own version), then acts on the request."""
    w = analysed_world(make_world, FakeMetrics())
    rid = w.start("2.0.0")
    real = analysis_module.run_step

    async def crashing(step: Step, ctx: Any) -> dict[str, Any]:
        if step is Step.START and ctx.host.name == "h2":
            raise Crash
        return await real(step, ctx)

    monkeypatch.setattr(analysis_module, "run_step", crashing)
    until_crash(lambda: w.drive(rid))
    assert w.running("h2") == "" and "h2" in w.switch.out and "h2" in w.silencer.muted  # stopped, out, muted
    monkeypatch.setattr(analysis_module, "run_step", real)
    w.store.request(rid, request_)
    rec = w.drive(rid, owner="another")
    assert rec.state in (ReleaseState.PAUSED, ReleaseState.ABORTED, ReleaseState.ROLLED_BACK), rec.message
    assert w.running("h2") == "1.0.0" and w.current("h2") == "1.0.0"
    assert "h2" not in w.switch.out and "h2" not in w.silencer.muted, (w.switch.out, w.silencer.muted)
    assert rec.plan["analysis"]["baseline"]["restarted"] is True
