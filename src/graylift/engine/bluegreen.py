"""The blue-green phases of a release (:mod:`graylift.core.bluegreen`): the idle group's pass, the switch, and
the switch back.

The switch is one durable step over every host of both groups and every backend: its target group is written
to the release's plan (``switching``) before any backend is called, and ``serving`` after every host is verified
where it belongs. A controller killed in the middle leaves ``switching`` set; the next one runs the same
switch again from the start (every put-back and take-out is check-then-act), so it converges: a host is done
when every backend reads it back in (the group switched to) or out and drained (the other group).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from graylift.core.bluegreen import BlueGreen, Phase, phase_of, switch_order
from graylift.core.flow import Step
from graylift.core.model import Host, OnFailure
from graylift.core.plan import Plan
from graylift.core.state import HostState, ReleaseState
from graylift.engine.crash import crash_point
from graylift.engine.phase import PhaseBase
from graylift.errors import GrayliftError, LeaseLost
from graylift.runtime import StepContext, Target, no_package
from graylift.steps import run_step
from graylift.store import ReleaseRecord

IN_STEPS = (Step.PUT_BACK,)  # in every backend, each read back in
OUT_STEPS = (Step.TAKE_OUT, Step.QUIET)  # out of every backend, each read back out; then drained


class BlueGreenPhase(PhaseBase):
    """The blue-green part of one controller's drive (:class:`graylift.engine.loop._Drive` is one)."""

    async def blue_green(self, rec: ReleaseRecord) -> None:
        """A running blue-green release: the phase its cursor stands for."""
        phase = phase_of(rec.cursor)
        if phase is Phase.IDLE:
            await self.idle_pass(rec)
        elif phase is Phase.SWITCH:
            await self.switch_forward(rec)
        else:
            self.finish_success(rec)

    async def finish_switch(self, rec: ReleaseRecord) -> bool:
        """A switch a crash interrupted is finished before any request is read (a pause or an abort never
        leaves both groups half in). True if there was one."""
        section = rec.plan.get("blue_green") or {}
        if not section.get("switching"):
            return False
        if rec.state is ReleaseState.RUNNING:
            await self.switch_forward(rec)
        elif rec.state is ReleaseState.ROLLING_BACK:
            await self.switch_back(rec)
        else:
            return False
        return True

    # --- phase 1: the idle group -----------------------------------------------------------------

    async def idle_pass(self, rec: ReleaseRecord) -> None:
        """Every idle host gets the new version, running and healthy, out of traffic. A host that fails is put
        back on what it ran (out of traffic) and the release stops before any switch."""
        batch = Plan.from_dict(rec.plan).batches[0]
        settled = {r.host for r in self.store.host_runs(rec.id) if r.state.settled}
        worked = await self.work_batch(rec, batch, [h for h in batch.hosts if h not in settled])
        if worked is None:
            return  # stopped at a safe point by a request; the loop handles it
        rec, runs = worked
        bg = BlueGreen.of(rec.plan)
        bad = [h for h in batch.hosts if runs[h].state is not HostState.DONE]
        self.store.journal(rec.id, None, batch.label, "done", {"failed": bad})
        if not bad:
            self.advance(rec, 0.0)
            return
        reasons = "; ".join(f"{h}: {runs[h].error or runs[h].state.value}" for h in bad)
        what = (f"{len(bad)} host(s) of {bg.idle} not healthy on {rec.version} ({reasons}); no switch was made, "
                f"{bg.live} still serves")
        if self.strategy.on_failure is OnFailure.ROLLBACK:
            self.move(rec, ReleaseState.ROLLING_BACK, f"rolling back: {what}")
        else:
            self.move(rec, ReleaseState.PAUSED, f"paused before the switch: {what}; fix them and "
                      f"`graylift retry {rec.id}`, or `graylift rollback {rec.app} --env {rec.env}`")

    # --- phase 2: the switch -------------------------------------------------------------------

    async def switch_forward(self, rec: ReleaseRecord) -> None:
        """The idle group in, then the live group out; then the rollback window. A switch that fails goes back:
        the live group in, the idle group out, and the release pauses."""
        bg = BlueGreen.of(rec.plan)
        idle = self._idle_hosts(rec)
        try:
            await self.switch_traffic(rec, bg.idle, into=idle, out_of=bg.live_hosts)
        except LeaseLost:
            raise
        except GrayliftError as exc:
            note = ""
            try:
                await self.switch_traffic(rec, bg.live, into=bg.live_hosts, out_of=idle)
            except LeaseLost:
                raise
            except GrayliftError as again:
                note = f"; switching back to {bg.live} failed too ({again}): see each host's journal"
            self.move(rec, ReleaseState.PAUSED, f"paused: the switch to {bg.idle} failed ({exc}); {bg.live} "
                      f"serves{note}. Fix it and `graylift resume {rec.id}` switches again")
            return
        window = bg.window_seconds
        if window <= 0:
            self.advance(rec, 0.0)
            return
        until = self.clock.now() + timedelta(seconds=window)
        self.store.journal(rec.id, None, "rollback window", "wait", {"seconds": window, "kept": bg.live})
        self.move(rec, ReleaseState.BAKING,
                  f"{bg.idle} serves {rec.version}; {bg.live} kept running out of traffic for {window:g}s: "
                  f"`graylift rollback {rec.app} --env {rec.env}` switches back, `graylift promote {rec.id}` "
                  "ends the window", phase="rollback window", wait_until=until)

    async def switch_back(self, rec: ReleaseRecord) -> None:
        """A blue-green rollback: idle hosts caught mid-pass go back to what they ran, then the live group in
        (verified) and the new group out. Nothing is stopped or restarted."""
        await self.hosts.settle(rec)
        bg = BlueGreen.of(rec.plan)
        try:
            await self.switch_traffic(rec, bg.live, into=bg.live_hosts, out_of=self._idle_hosts(rec, every=True))
        except LeaseLost:
            raise
        except GrayliftError as exc:
            self.move(rec, ReleaseState.PAUSED, f"the switch back to {bg.live} failed ({exc}); fix it and "
                      f"`graylift retry {rec.id}` (goes on switching back), or `graylift abort {rec.id}`")
            return
        rolled = 0
        for run in self.store.host_runs(rec.id):
            if run.state is HostState.DONE:
                self.store.update_host_run(rec.id, run.host, state=HostState.ROLLED_BACK,
                                           error=f"out of traffic, still running {rec.version}",
                                           finished_at=self.clock.now())
                rolled += 1
        self.finish_rolled_back(rec, rolled, f"switched back: {bg.live} serves again, {bg.idle} out of traffic; "
                                f"no host restarted. {rec.message}")

    def _idle_hosts(self, rec: ReleaseRecord, *, every: bool = False) -> list[Host]:
        """The idle group's hosts on the new version (``every``: all of them, whatever their pass did)."""
        return [r.host_spec for r in self.store.host_runs(rec.id) if every or r.state is HostState.DONE]

    async def switch_traffic(self, rec: ReleaseRecord, to: str, *, into: Sequence[Host],
                             out_of: Sequence[Host]) -> None:
        """Make ``to`` the group in traffic: every host of ``into`` in every backend (verified), then every host
        of ``out_of`` out of every one (verified, drained). Durable: ``switching`` is written before any backend
        is called and ``serving`` after the last host is verified."""
        plan = self.store.get_release(rec.id).plan
        self.store.update_release(rec.id, plan=plan | {"blue_green": plan["blue_green"] | {"switching": to}},
                                  phase=f"switch to {to}", message=f"switching traffic to {to}")
        order = switch_order(into=[h.name for h in into], out_of=[h.name for h in out_of])
        by_name = {h.name: h for h in (*into, *out_of)}
        self.store.journal(rec.id, None, "switch", "begin", {"to": to, "in": [h for d, h in order if d == "in"],
                                                              "out": [h for d, h in order if d == "out"]})

        def moving(steps: tuple[Step, ...]) -> Callable[[ReleaseRecord, str], Awaitable[None]]:
            async def one(r: ReleaseRecord, name: str) -> None:
                await self._on_backends(r, by_name[name], steps)

            return one

        await self.each([h for d, h in order if d == "in"], moving(IN_STEPS), rec)
        await self.each([h for d, h in order if d == "out"], moving(OUT_STEPS), rec)
        section = {k: v for k, v in plan["blue_green"].items() if k != "switching"} | {"serving": to}
        self.store.update_release(rec.id, plan=self.store.get_release(rec.id).plan | {"blue_green": section})
        self.store.journal(rec.id, None, "switch", "done", {"serving": to})

    async def _on_backends(self, rec: ReleaseRecord, host: Host, steps: tuple[Step, ...]) -> None:
        """Run the traffic ``steps`` for one host (the steps' own check-then-act), journaled as the switch."""
        self.lease.check()
        transport = self.lease.on_host(await self.fleet.connect(host), self.fleet.runtime.deploy_dir)
        target = Target(rec.version, rec.version, None, no_package)
        for step in steps:
            ctx = StepContext.open(self.hosts.runtime, host, transport, target, rec.id, self.clock)
            detail = await run_step(step, ctx)
            crash_point("after", f"switch.{step.value}", host.name)
            self.store.journal(rec.id, host.name, "switch", step.value, detail)
