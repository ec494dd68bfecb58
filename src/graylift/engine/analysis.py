"""Canary analysis during the bake: a fresh baseline, metric queries, judgements recorded in the release.

The baseline is as many old-version hosts as canaries (of the canaries' group first), restarted through the
same graceful path as a release (mute, take out, quiet, stop, start, health, put back, unmute) at the same
moment as the canaries, so both groups start cold. Its progress is kept in the release's plan
(``analysis.baseline``): a controller killed mid-restart restarts it again, from the top, on resume.

At every ``interval`` of the bake the canaries' and the baseline's metrics over the window since the bake
began are read from the metrics source and judged (:func:`graylift.core.analysis.judge`); each judgement
(queries, sample sizes, p-values, ratios, verdict) is journaled (step ``analysis``) and the latest one is
kept in the plan (``analysis.latest``), which ``graylift status`` shows. A query error is retried at the
next interval; ``max_query_errors`` of them in a row halt the release.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from graylift.core.analysis import AnalysisSettings, Group, Judgement, Verdict, Window, judge, pick_baseline
from graylift.core.flow import Step
from graylift.core.model import Host
from graylift.core.plan import Plan, check_cap
from graylift.core.state import HostState, ReleaseKind
from graylift.engine.phase import PhaseBase
from graylift.errors import GrayliftError, LeaseLost, MetricsError, PlanError
from graylift.ports import MetricsSource
from graylift.runtime import StepContext, Target, no_package
from graylift.steps import run_step
from graylift.store import ReleaseRecord

RESTART = (Step.MUTE, Step.TAKE_OUT, Step.QUIET, Step.STOP, Step.START, Step.HEALTH, Step.PUT_BACK, Step.UNMUTE)
ENSURED = (Step.START, Step.HEALTH, Step.PUT_BACK, Step.UNMUTE)  # tried again after a failed restart


async def collect(metrics: MetricsSource, s: AnalysisSettings, canary: Sequence[Host], baseline: Sequence[Host],
                  start: datetime, end: datetime) -> Window:
    """Both groups' data over [start, end] (MetricsError when a query fails)."""
    from graylift.core.analysis import render_queries

    seconds = (end - start).total_seconds()

    async def group(hosts: Sequence[Host]) -> tuple[Group, dict[str, str]]:
        queries = render_queries(s, [(h.name, h.address) for h in hosts], seconds)
        first = min(end, start + timedelta(seconds=s.step))
        p50, p99, requests, errors = await asyncio.gather(
            metrics.query_range(queries["latency_p50"], start=first, end=end, step=s.step),
            metrics.query_range(queries["latency_p99"], start=first, end=end, step=s.step),
            metrics.query_range(queries["requests"], start=end, end=end, step=1.0),
            metrics.query_range(queries["errors"], start=end, end=end, step=1.0))
        return Group(p50=_samples(p50), p99=_samples(p99), requests=_last(requests), errors=_last(errors)), queries

    (canary_group, queries), (baseline_group, _) = await asyncio.gather(group(canary), group(baseline))
    return Window(canary_group, baseline_group, queries)


async def fleet_rates(metrics: MetricsSource, s: AnalysisSettings, rest: Sequence[Host], start: datetime,
                      end: datetime) -> dict[str, float | None]:
    """The rest of the fleet's requests and 5xx over the window: a sanity check, recorded, never judged."""
    from graylift.core.analysis import render_queries

    if not rest:
        return {"requests": None, "errors": None}
    queries = render_queries(s, [(h.name, h.address) for h in rest], (end - start).total_seconds())
    requests, errors = await asyncio.gather(
        metrics.query_range(queries["requests"], start=end, end=end, step=1.0),
        metrics.query_range(queries["errors"], start=end, end=end, step=1.0))
    return {"requests": _last(requests), "errors": _last(errors)}


def _samples(series: list[tuple[float, ...]]) -> tuple[float, ...] | None:
    values = tuple(v for one in series for v in one)
    return values or None  # no series, or only NaN steps: no data


def _last(series: list[tuple[float, ...]]) -> float | None:
    values = [one[-1] for one in series if one]
    return sum(values) if values else None


class AnalysisPhase(PhaseBase):
    """The analysis part of the canary phase (mixed into :class:`graylift.engine.canary.CanaryPhase`)."""

    def analysis_for(self, rec: ReleaseRecord) -> AnalysisSettings | None:
        """The analysis settings, or None: none configured, or a first install (no old version to compare
        the canaries with: the bake is health checks only, and the plan says so)."""
        if self.strategy.analysis is None or rec.kind is not ReleaseKind.RELEASE:
            return None
        if rec.previous_version is None:
            if "skipped" not in self.analysis_state(rec):
                self.save_analysis(rec, skipped="first install: no old version to compare the canaries with")
            return None
        return self.strategy.analysis

    # --- the record in the plan ----------------------------------------------------------------

    def analysis_state(self, rec: ReleaseRecord) -> dict[str, Any]:
        return dict(self.store.get_release(rec.id).plan.get("analysis") or {})

    def save_analysis(self, rec: ReleaseRecord, **changes: Any) -> dict[str, Any]:
        plan = self.store.get_release(rec.id).plan
        state = dict(plan.get("analysis") or {}) | changes
        self.store.update_release(rec.id, plan=plan | {"analysis": state})
        return state

    # --- the baseline --------------------------------------------------------------------------

    def baseline_hosts(self, rec: ReleaseRecord, plan: Plan) -> list[str]:
        """The baseline (picked once, kept in the plan) while it still needs its restart, else []."""
        state = self.analysis_state(rec)
        baseline = state.get("baseline") or {}
        if baseline.get("restarted"):
            return []
        if "hosts" not in baseline:
            runs = {r.host: r for r in self.store.host_runs(rec.id)}
            out = self.out_of_service(rec, list(runs.values()))
            canaries = [(h, runs[h].host_spec.group) for h in plan.batches[0].hosts]
            later = [(h, runs[h].host_spec.group) for b in plan.batches[1:] for h in b.hosts
                     if runs[h].state is HostState.PENDING and h not in out]
            baseline = {"hosts": list(pick_baseline(canaries, later)), "restarted": False}
            self.save_analysis(rec, baseline=baseline)
            self.store.journal(rec.id, None, "baseline", "picked", {"hosts": baseline["hosts"],
                                                                   "canaries": [c for c, _ in canaries]})
        return list(baseline["hosts"])

    def baseline_fits(self, rec: ReleaseRecord, plan: Plan, pending: Sequence[str], baseline: Sequence[str],
                      strategy: Any) -> bool:
        """Whether the baseline may restart together with the canaries under the 50% rule."""
        try:
            check_cap(len(self.out_of_service(rec) | set(pending) | set(baseline)), plan.cluster_size,
                      "the canaries with their baseline", strategy)
        except PlanError:
            return False
        return True

    async def restart_baseline(self, rec: ReleaseRecord, hosts: Sequence[str]) -> str | None:
        """Restart the baseline hosts on their own version, gracefully; None, or why one could not be."""
        if not hosts:
            return None
        self.save_analysis(rec, baseline={"hosts": list(hosts), "restarted": False, "restarting": True})
        self.store.journal(rec.id, None, "baseline", "begin", {"hosts": list(hosts)})
        problems = await asyncio.gather(*(self._restart(rec, h) for h in hosts))
        failed = [p for p in problems if p]
        if failed:
            self.save_analysis(rec, baseline={"hosts": list(hosts), "restarted": False, "error": "; ".join(failed)})
            return "; ".join(failed)
        self.save_analysis(rec, baseline={"hosts": list(hosts), "restarted": True})
        self.store.journal(rec.id, None, "baseline", "done", {"hosts": list(hosts)})
        return None

    async def finish_baseline(self, rec: ReleaseRecord) -> bool:
        """A baseline restart a crash interrupted is finished (from the top, on the hosts' own version) before
        any request is read: a pause, abort or rollback never leaves a baseline host stopped or out. True if
        there was one."""
        baseline = self.analysis_state(rec).get("baseline") or {}
        if not baseline.get("restarting"):
            return False
        problem = await self.restart_baseline(rec, baseline["hosts"])
        self.store.journal(rec.id, None, "baseline", "finished", {"after": "an interrupted restart",
                                                                  "problem": problem})
        return True

    async def _restart(self, rec: ReleaseRecord, host: str) -> str | None:
        run = self.store.host_run(rec.id, host)
        done: list[Step] = []
        ctx: StepContext | None = None
        try:
            transport = await self.hosts.connect(run)
            probe = StepContext.open(self.hosts.runtime, run.host_spec, transport, _unused_target(), rec.id,
                                     self.clock)
            found = await probe.dir.survey()
            if found.fresh or found.current_dir is None or found.version is None:
                return f"{host}: nothing installed to restart"
            target = Target(found.version, found.current_dir, None, no_package, forward=False)
            ctx = StepContext.open(self.hosts.runtime, run.host_spec, transport, target, rec.id, self.clock,
                                   found=found)
            for step in RESTART:
                self.hosts.check_lease()
                await run_step(step, ctx)
                done.append(step)
            self.store.journal(rec.id, host, "baseline", "restarted", {"version": found.version})
            return None
        except LeaseLost:
            raise
        except (GrayliftError, OSError) as exc:
            failed_at = RESTART[len(done)].value if len(done) < len(RESTART) else "?"
            self.store.journal(rec.id, host, "baseline", "failed", {"step": failed_at, "error": str(exc)})
            problem = f"{host}: {failed_at}: {exc}"
            if done and ctx is not None and not await self._ensure_back(rec, host, ctx, done):
                # not back (not healthy, or a backend refused it): out of traffic, alerts firing, and marked
                # in the release and the CMDB, as a host a rolling pass could not put back is
                await self.hosts.needs_attention(rec, host, f"the canary analysis's baseline restart on its own "
                                                 f"version failed at {failed_at}: {exc}", {})
                problem += " (it needs attention)"
            return problem

    async def _ensure_back(self, rec: ReleaseRecord, host: str, ctx: StepContext, done: list[Step]) -> bool:
        """After a failed restart: started, healthy, in traffic and unmuted again if at all possible. True if
        it is; an unhealthy host is never put back into traffic."""
        for step in ENSURED:
            if step in (Step.START, Step.HEALTH) and Step.STOP not in done:
                continue
            try:
                await run_step(step, ctx)
            except (GrayliftError, OSError) as exc:
                self.store.journal(rec.id, host, "baseline", "failed", {"step": step.value, "error": str(exc)})
                return False
        return True

    # --- judgements ----------------------------------------------------------------------------

    def begin_analysis(self, rec: ReleaseRecord, s: AnalysisSettings) -> None:
        now = self.clock.now()
        self.save_analysis(rec, started=now.isoformat(), next=(now + timedelta(seconds=s.interval)).isoformat(),
                           errors_in_row=0, extensions=0, judgements=0, latest=None)

    async def judgement(self, rec: ReleaseRecord, s: AnalysisSettings, metrics: MetricsSource | None, *,
                        final: bool) -> Judgement | None:
        """The judgement due now (recorded), or None when none is due yet."""
        state = self.analysis_state(rec)
        now = self.clock.now()
        last = (state.get("latest") or {}).get("verdict")
        due = now >= datetime.fromisoformat(state["next"]) or (final and last != Verdict.ERROR.value)
        if not due:
            return None
        started = datetime.fromisoformat(state["started"])
        runs = {r.host: r for r in self.store.host_runs(rec.id)}
        plan = Plan.from_dict(rec.plan)
        canaries = [runs[h].host_spec for h in plan.batches[0].hosts if runs[h].state is HostState.DONE]
        baseline = [runs[h].host_spec for h in (state.get("baseline") or {}).get("hosts", [])]
        errors_in_row = int(state.get("errors_in_row", 0))
        if metrics is None:
            raise GrayliftError("canary analysis is configured but the fleet has no metrics source")
        try:
            window = await collect(metrics, s, canaries, baseline, started, now)
            rest = [r.host_spec for r in runs.values() if r.host_spec not in canaries and r.host_spec not in baseline]
            fleet = await fleet_rates(metrics, s, rest, started, now)
            # in a thread: scipy's first import and the tests take CPU time the lease's heartbeat must not wait for
            got = await asyncio.to_thread(judge, window, s, final=final)
            errors_in_row = 0
        except MetricsError as exc:
            errors_in_row += 1
            got = judge(None, s, final=final, query_errors=errors_in_row, error=str(exc))
            fleet = {}
        record = got.to_json() | {"at": now.isoformat(), "window_seconds": round((now - started).total_seconds(), 1),
                                  "fleet": fleet, "final": final, "canaries": [h.name for h in canaries],
                                  "baseline": [h.name for h in baseline]}
        self.store.journal(rec.id, None, "analysis", got.verdict.value, record)
        self.save_analysis(rec, latest=record, errors_in_row=errors_in_row,
                           judgements=int(state.get("judgements", 0)) + 1,
                           next=(now + timedelta(seconds=s.interval)).isoformat())
        return got


def _unused_target() -> Target:
    return Target("", "", None, no_package, forward=False)
