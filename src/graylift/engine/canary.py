"""The canary phase of a release: the canaries must be on the new version (a skipped one is replaced by
another host of its group), then they bake: health-checked every few seconds until the bake ends, then
promoted (automatically or by a person), or, if one fails, the release rolls back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from graylift.core.analysis import OnMetricsDown, Verdict
from graylift.core.plan import Plan
from graylift.core.policy import BakeOutcome, bake_outcome
from graylift.core.state import HostState, ReleaseState, Request
from graylift.engine.analysis import AnalysisPhase
from graylift.errors import GrayliftError, LeaseLost
from graylift.reading import health
from graylift.runtime import StepContext
from graylift.store import HostRunRecord, ReleaseRecord

BAKE_CHECK_SECONDS = 2.0


class CanaryPhase(AnalysisPhase):
    """The canary part of one controller's drive (:class:`graylift.engine.loop._Drive` is one)."""

    async def canary_batch(self, rec: ReleaseRecord, plan: Plan, pending: Sequence[str]) -> None:
        """The canaries' pass; with canary analysis, the baseline restarts at the same moment (when the 50%
        rule allows both at once; else after the canaries, before the bake)."""
        baseline = self.baseline_hosts(rec, plan) if self.analysis_for(rec) is not None else []
        if not baseline or not self.baseline_fits(rec, plan, pending, baseline, self.strategy):
            await self.each(pending, self.hosts.release, rec, stop_on_request=True)
            return
        from graylift.engine.loop import _first  # the loop's own unwrapping: a lost lease first

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.each(pending, self.hosts.release, rec, stop_on_request=True))
                group.create_task(self.restart_baseline(rec, baseline))
        except BaseExceptionGroup as failed:  # the other was cancelled: raise the cause
            raise _first(failed) from None

    async def after_canary(self, rec: ReleaseRecord, plan: Plan, runs: dict[str, HostRunRecord]) -> None:
        """The canary phase goes on to its bake only with ``canary_required`` canaries on the new version.

        A canary that was skipped (unhealthy before the release) is replaced by another host of the canary
        group, recorded; with none left, the release pauses before any other host is touched.
        """
        canary = plan.batches[0]
        on_new = [h for h in canary.hosts if runs[h].state is HostState.DONE]
        required = plan.canary_required or len(canary.hosts)
        if len(on_new) < required:
            missing = [h for h in canary.hosts if runs[h].state is not HostState.DONE]
            spare = self.spare_canary(rec, plan, runs)
            if spare is not None:
                new_plan = plan.with_canary_replacement(spare)
                self.store.update_release(rec.id, plan=rec.plan | new_plan.to_dict(), message=(
                    f"canary {', '.join(missing)} skipped ({runs[missing[0]].error or 'not on the new version'}); "
                    f"replaced by {spare}"))
                self.store.update_host_run(rec.id, spare, batch=0)
                self.store.journal(rec.id, None, "canary", "replaced",
                                   {"skipped": missing, "replacement": spare, "reason": runs[missing[0]].error})
                return
            reasons = "; ".join(f"{h}: {runs[h].error or runs[h].state.value}" for h in missing)
            self.move(rec, ReleaseState.PAUSED,
                      f"paused: the canary phase needs {required} canary host(s) on {rec.version}, {len(on_new)} "
                      f"ran it ({reasons}) and no other in-service host of the canary group is left; no other "
                      f"host was touched. Fix them and `graylift retry {rec.id}`, or abort")
            return
        settings = self.analysis_for(rec)
        if settings is not None:
            problem = await self.restart_baseline(rec, self.baseline_hosts(rec, plan))  # if not done with the canaries
            if problem:
                self.move(rec, ReleaseState.PAUSED,
                          f"paused: the canary analysis's baseline could not be restarted ({problem}); no other "
                          f"host was touched. Fix it and `graylift retry {rec.id}` (restarts the baseline, then "
                          "bakes), or abort")
                return
            self.begin_analysis(rec, settings)
        bake = self.strategy.bake_seconds
        until = self.clock.now() + timedelta(seconds=bake)
        self.store.journal(rec.id, None, "bake", "wait", {"seconds": bake, "canaries": on_new})
        self.move(rec, ReleaseState.BAKING, f"canary baking for {bake:g}s", phase="bake", wait_until=until)

    def spare_canary(self, rec: ReleaseRecord, plan: Plan, runs: dict[str, HostRunRecord]) -> str | None:
        group = self.strategy.canary_group
        if group is None:
            return None  # named canary hosts: no stand-in was named
        # never the analysis's baseline: it must stay on the old version
        taken = set(self.store.host_health(rec.app, rec.env)) | set(
            (self.analysis_state(rec).get("baseline") or {}).get("hosts", []))
        for batch in plan.batches[1:]:
            for name in batch.hosts:
                run = runs[name]
                if run.state is HostState.PENDING and run.host_spec.group == group and name not in taken:
                    return name
        return None

    # --- canary bake ---------------------------------------------------------------------------

    async def bake(self, rec: ReleaseRecord) -> None:
        plan = Plan.from_dict(rec.plan)
        canaries = [r for r in self.store.host_runs(rec.id)
                    if r.host in plan.batches[0].hosts and r.state is HostState.DONE]
        required = plan.canary_required or len(plan.batches[0].hosts)
        healthy, detail = len(canaries) >= required, f"{len(canaries)} of {required} canaries on the new version"
        for run in canaries if healthy else []:
            try:
                transport = await self.hosts.connect(run)  # behind the lease, like every host command
                target = await self.hosts.targets.target(rec, run)
                ctx = StepContext.open(self.hosts.runtime, run.host_spec, transport, target, rec.id, self.clock,
                                       found=run.found)
                result = await health(ctx)
            except LeaseLost:
                raise
            except GrayliftError as exc:
                healthy, detail = False, f"{run.host}: {exc}"
                break
            if not result.ok:
                healthy, detail = False, f"{run.host}: {result.detail}"
                break
        until = rec.wait_until or self.clock.now()
        outcome = bake_outcome(strategy=self.strategy, now=self.clock.now(), bake_until=until,
                               canaries_healthy=healthy, promote_requested=rec.requested is Request.PROMOTE)
        if (self.analysis_for(rec) is not None and outcome is not BakeOutcome.FAIL
                and rec.requested is not Request.PROMOTE and not await self.analysed(rec, outcome)):
            return
        if outcome is BakeOutcome.WAIT:
            left = (until - self.clock.now()).total_seconds()
            await self.clock.sleep(max(0.05, min(BAKE_CHECK_SECONDS, left)))
        elif outcome is BakeOutcome.PROMOTE:
            self.store.clear_request(rec.id)
            self.store.journal(rec.id, None, "bake", "done", {"promote": "requested" if rec.requested else "auto"})
            promoted = self.move(rec, ReleaseState.RUNNING, "canary promoted", phase="", wait_until=None)
            self.advance(promoted, self.strategy.pause_seconds)
        elif outcome is BakeOutcome.AWAIT_PROMOTION:
            self.move(rec, ReleaseState.AWAITING_PROMOTION,
                      f"canary baked healthy; promote with `graylift promote {rec.id}`", wait_until=None)
        else:
            self.store.journal(rec.id, None, "bake", "failed", {"error": detail})
            self.move(rec, ReleaseState.ROLLING_BACK, f"canary failed during bake ({detail}); rolling back")


    async def analysed(self, rec: ReleaseRecord, outcome: BakeOutcome) -> bool:
        """Run the canary analysis's judgement if one is due; False when it decided the bake's next move
        (a failure rolls back, a halt pauses, an inconclusive end extends the bake or pauses)."""
        settings = self.analysis_for(rec)
        assert settings is not None
        final = outcome is not BakeOutcome.WAIT
        got = await self.judgement(rec, settings, self.fleet.runtime.metrics, final=final)
        if got is None or got.verdict in (Verdict.CONTINUE, Verdict.PASS):
            return True
        if got.verdict is Verdict.FAIL:
            self.store.journal(rec.id, None, "bake", "failed", {"error": f"canary analysis: {got.reason}"})
            self.move(rec, ReleaseState.ROLLING_BACK, f"canary analysis failed ({got.reason}); rolling back")
        elif got.verdict is Verdict.HALT:
            if settings.on_down is OnMetricsDown.ROLLBACK:
                self.move(rec, ReleaseState.ROLLING_BACK, f"canary analysis halted: Prometheus: {got.reason}; "
                                                          "rolling back (on_prometheus_down: rollback)")
            else:
                self.move(rec, ReleaseState.PAUSED,
                          f"paused: canary analysis halted, never promoted: Prometheus: {got.reason}. Fix "
                          f"Prometheus and `graylift resume {rec.id}` (bakes again), or `graylift rollback "
                          f"{rec.app} --env {rec.env}`")
        elif got.verdict is Verdict.ERROR:
            await self.clock.sleep(min(BAKE_CHECK_SECONDS, settings.interval))
        else:  # inconclusive at the end of the bake
            extensions = int(self.analysis_state(rec).get("extensions", 0))
            if extensions < settings.max_extensions:
                until = self.clock.now() + timedelta(seconds=self.strategy.bake_seconds)
                self.save_analysis(rec, extensions=extensions + 1)
                self.store.journal(rec.id, None, "analysis", "extended",
                                   {"reason": got.reason, "until": until.isoformat()})
                self.store.update_release(rec.id, wait_until=until, message=(
                    f"canary analysis inconclusive ({got.reason}); bake extended by {self.strategy.bake_seconds:g}s "
                    f"({extensions + 1} of {settings.max_extensions})"))
            else:
                self.move(rec, ReleaseState.PAUSED,
                          f"paused: canary analysis still inconclusive after {extensions} extension(s) of the bake "
                          f"({got.reason}); too little traffic never passes. `graylift resume {rec.id}` bakes "
                          f"again (send it traffic), or `graylift rollback {rec.app} --env {rec.env}`")
        return False
