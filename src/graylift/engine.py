"""The engine: the one place with concurrency. It moves a release from state to state.

A release is data in the store: its plan (batches), a cursor (the batch being worked on) and per-host
step states. :meth:`Engine.drive` reads that data, does the next thing, writes the result, and loops
until the release is finished or paused. Every wait is a timestamp in the store (``wait_until``), so
a controller that dies and is restarted picks up exactly where the data says, re-running at most the
one step per host that was in progress (every step is safe to repeat).

Safe points: requests (pause, abort, rollback, promote) are read between hosts, between batches and
during waits. Hosts already in flight finish their pass (or are reverted) first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from graylift.core.flow import RELEASE_FLOW, ROLLBACK_FLOW, UNDO_OF, Step, remaining, undo_steps
from graylift.core.model import Host, Package
from graylift.core.plan import Plan, batch_size_for, check_cap
from graylift.core.policy import BakeOutcome, Verdict, after_batch, bake_outcome
from graylift.core.state import HostState, ReleaseState, check_transition
from graylift.errors import GrayliftError, PlanError, StateError, TransportError
from graylift.ports import Clock, Transport
from graylift.steps import AppRuntime, HostUnhealthy, StepContext, health, read_current_version, run_step
from graylift.store import HostRunRecord, ReleaseRecord, Store

log = logging.getLogger("graylift.engine")

HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 10.0
BAKE_CHECK_SECONDS = 2.0


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def controller_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Fleet(Protocol):
    """What the engine needs to touch the hosts of one release (built from the release's config snapshot)."""

    runtime: AppRuntime

    async def connect(self, host: Host) -> Transport: ...

    async def package(self, version: str) -> Package: ...

    async def close(self) -> None: ...


FleetFactory = Callable[[ReleaseRecord], Awaitable[Fleet]]


@dataclass
class StepFailed(Exception):
    step: Step
    error: BaseException

    def __str__(self) -> str:
        return f"{self.step.value}: {self.error}"


class Engine:
    """Drives releases through the store. One Engine per controller process."""

    def __init__(self, store: Store, fleet_factory: FleetFactory, *, clock: Clock | None = None,
                 owner: str | None = None) -> None:
        self.store = store
        self.fleet_factory = fleet_factory
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or controller_id()

    # --- lease ---------------------------------------------------------------------------------

    def owner_is_dead(self, rec: ReleaseRecord) -> bool:
        """True when the recorded owner is a process on this machine that no longer exists."""
        if not rec.owner or ":" not in rec.owner:
            return False
        host, _, pid = rec.owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def claim(self, release_id: int) -> ReleaseRecord:
        rec = self.store.get_release(release_id)
        stale_after = 0.0 if self.owner_is_dead(rec) else STALE_AFTER_SECONDS
        if not self.store.claim(release_id, self.owner, stale_after):
            rec = self.store.get_release(release_id)
            raise StateError(
                f"release #{release_id} is being driven by {rec.owner} (last heartbeat {rec.heartbeat_at}); "
                f"it is taken over automatically {STALE_AFTER_SECONDS:g}s after that controller stops"
            )
        return self.store.get_release(release_id)

    async def _heartbeat(self, release_id: int) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self.store.heartbeat(release_id, self.owner)

    # --- the loop ------------------------------------------------------------------------------

    async def drive(self, release_id: int) -> ReleaseRecord:
        """Work on the release until it is finished or paused; returns its final record."""
        rec = self.claim(release_id)
        beat = asyncio.create_task(self._heartbeat(release_id))
        fleet: Fleet | None = None
        try:
            fleet = await self.fleet_factory(rec)
            return await self._loop(release_id, fleet)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            if fleet is not None:
                await fleet.close()
            self.store.release_lease(release_id, self.owner)

    def _move(self, rec: ReleaseRecord, state: ReleaseState, message: str | None = None,
              **fields: Any) -> ReleaseRecord:
        check_transition(ReleaseState(rec.state), state)
        if state.finished:
            return self.store.finish_release(rec.id, state.value, message or rec.message)
        if message is not None:
            fields["message"] = message
        self.store.journal(rec.id, None, "release", state.value, {"message": message or ""})
        return self.store.update_release(rec.id, state=state.value, **fields)

    async def _loop(self, rid: int, fleet: Fleet) -> ReleaseRecord:
        while True:
            rec = self.store.get_release(rid)
            state = ReleaseState(rec.state)
            if state.finished or state is ReleaseState.PAUSED:
                return rec
            if await self._handle_request(rec, fleet):
                continue
            if state is ReleaseState.PENDING:
                self._move(rec, ReleaseState.RUNNING, f"started by {rec.started_by}")
            elif state is ReleaseState.RUNNING:
                await self._run_next_batch(rec, fleet)
            elif state is ReleaseState.BAKING:
                await self._bake(rec, fleet)
            elif state is ReleaseState.AWAITING_PROMOTION:
                await self.clock.sleep(1.0)
            elif state is ReleaseState.ROLLING_BACK:
                await self._roll_back(rec, fleet)

    async def _handle_request(self, rec: ReleaseRecord, fleet: Fleet) -> bool:
        """Act on a pending request at this safe point. True if the loop should look again."""
        req, state = rec.requested, ReleaseState(rec.state)
        if req is None:
            return False
        if req == "promote" and state is ReleaseState.AWAITING_PROMOTION:
            self.store.clear_request(rec.id)
            self._advance(self._move(rec, ReleaseState.RUNNING, "promoted"), fleet.runtime.strategy.pause_seconds)
            return True
        if req == "promote":
            return False  # a promote during the bake is read by the bake itself
        self.store.clear_request(rec.id)
        if req == "pause" and state is not ReleaseState.ROLLING_BACK:
            # hosts caught mid-flow by a crash finish their pass first: a paused release leaves none half-done
            in_flight = [r.host for r in self.store.host_runs(rec.id)
                         if r.state in (HostState.RUNNING, HostState.REVERTING)]
            await self._run_hosts(rec, in_flight, fleet, ignore_requests=True)
            self._move(rec, ReleaseState.PAUSED, "paused on request; `graylift resume` goes on")
        elif req == "rollback" and state is not ReleaseState.ROLLING_BACK:
            self._move(rec, ReleaseState.ROLLING_BACK, "rolling back on request")
        elif req == "abort" and state is not ReleaseState.ROLLING_BACK:
            await self._settle_in_flight(rec, fleet)
            runs = self.store.host_runs(rec.id)
            done = sum(1 for r in runs if r.state == HostState.DONE)
            self._move(rec, ReleaseState.ABORTED,
                       f"aborted: {done} host(s) on {rec.version}, the others untouched; "
                       "`graylift rollback` puts the previous version back")
        return True

    def _advance(self, rec: ReleaseRecord, pause: float) -> None:
        """Move the cursor past the current batch, with the configured pause before the next one."""
        plan = Plan.from_dict(rec.plan)
        cursor = rec.cursor + 1
        if 0 < cursor < len(plan.batches) and pause > 0:
            until = self.clock.now() + timedelta(seconds=pause)
            self.store.journal(rec.id, None, "pause", "wait", {"seconds": pause})
            self.store.update_release(rec.id, cursor=cursor, phase="pause", wait_until=until,
                                      message=f"pause of {pause:g}s before {plan.batches[cursor].label}")
        else:
            self.store.update_release(rec.id, cursor=cursor, phase="", wait_until=None)

    # --- batches -------------------------------------------------------------------------------

    async def _run_next_batch(self, rec: ReleaseRecord, fleet: Fleet) -> None:
        plan = Plan.from_dict(rec.plan)
        if rec.wait_until is not None and self.clock.now() < rec.wait_until:
            await self.clock.sleep(min(1.0, (rec.wait_until - self.clock.now()).total_seconds()))
            return
        if rec.cursor >= len(plan.batches):
            self._finish_success(rec)
            return
        batch = plan.batches[rec.cursor]
        runs = {r.host: r for r in self.store.host_runs(rec.id)}
        down = sum(1 for r in runs.values() if r.state in (HostState.SKIPPED, HostState.NEEDS_ATTENTION))
        maintenance = sum(1 for s in plan.skipped if s.reason.startswith("in maintenance"))
        pending = [h for h in batch.hosts if not HostState(runs[h].state).settled]
        try:
            check_cap(len(pending) + down + maintenance, plan.cluster_size, batch.label,
                      fleet.runtime.strategy)
        except PlanError as exc:
            self._move(rec, ReleaseState.PAUSED, f"paused before {batch.label}: {exc}")
            return
        self.store.update_release(rec.id, phase=batch.label, wait_until=None,
                                  message=f"{batch.label}: {len(batch.hosts)} host(s)")
        self.store.journal(rec.id, None, batch.label, "begin", {"hosts": list(batch.hosts)})
        await self._run_hosts(rec, batch.hosts, fleet)
        rec = self.store.get_release(rec.id)
        runs = {r.host: r for r in self.store.host_runs(rec.id)}
        if any(not HostState(runs[h].state).settled for h in batch.hosts):
            return  # stopped at a safe point by a request; the loop handles it
        failed_here = sum(1 for h in batch.hosts if HostState(runs[h].state).counts_as_failure)
        failed_total = sum(1 for r in runs.values() if HostState(r.state).counts_as_failure)
        self.store.journal(rec.id, None, batch.label, "done",
                           {"failed": failed_here, "failed_total": failed_total})
        decision = after_batch(strategy=fleet.runtime.strategy, canary=batch.canary,
                               failed_in_batch=failed_here, failed_total=failed_total)
        if decision.verdict is Verdict.PAUSE:
            self._move(rec, ReleaseState.PAUSED,
                       f"paused after {batch.label}: {decision.reason}; fix and `graylift retry {rec.id}`, "
                       f"or `graylift rollback {rec.app} --env {rec.env}`")
        elif decision.verdict is Verdict.ROLLBACK:
            self._move(rec, ReleaseState.ROLLING_BACK, f"rolling back after {batch.label}: {decision.reason}")
        elif batch.canary:
            bake = fleet.runtime.strategy.bake_seconds
            until = self.clock.now() + timedelta(seconds=bake)
            self.store.journal(rec.id, None, "bake", "wait", {"seconds": bake})
            self._move(rec, ReleaseState.BAKING, f"canary baking for {bake:g}s", phase="bake", wait_until=until)
        else:
            self._advance(rec, fleet.runtime.strategy.pause_seconds)

    def _finish_success(self, rec: ReleaseRecord) -> None:
        runs = self.store.host_runs(rec.id)
        done = sum(1 for r in runs if r.state == HostState.DONE)
        skipped = len(runs) - done
        self.store.record_deployed(rec.app, rec.env, rec.version, rec.id)
        note = f"; {skipped} host(s) not on it (see status)" if skipped else ""
        self._move(rec, ReleaseState.SUCCEEDED, f"{done} host(s) on {rec.version}{note}")

    async def _run_hosts(self, rec: ReleaseRecord, hosts: Sequence[str], fleet: Fleet,
                         rollback: bool = False, ignore_requests: bool = False) -> None:
        limit = asyncio.Semaphore(max(1, fleet.runtime.strategy.max_parallel))

        async def one(name: str) -> None:
            async with limit:
                stop_here = not (rollback or ignore_requests)
                if stop_here and self.store.get_release(rec.id).requested in ("pause", "abort", "rollback"):
                    return  # safe point: not started
                if rollback:
                    await self._rollback_host(rec, name, fleet)
                else:
                    await self._release_host(rec, name, fleet)

        await asyncio.gather(*(one(h) for h in hosts))

    async def _settle_in_flight(self, rec: ReleaseRecord, fleet: Fleet) -> None:
        """Hosts caught mid-pass by a crash are reverted (release) or finished (revert, rollback)."""
        for run in self.store.host_runs(rec.id):
            state = HostState(run.state)
            if state is HostState.RUNNING:
                begun = [Step(s) for s in run.done_steps] + ([Step(run.step)] if run.step else [])
                await self._revert(rec, run, begun, "interrupted, then aborted", fleet)
            elif state in (HostState.REVERTING, HostState.ROLLING_BACK):
                await (self._rollback_host(rec, run.host, fleet) if state is HostState.ROLLING_BACK
                       else self._resume_revert(rec, run, fleet))

    # --- one host ------------------------------------------------------------------------------

    def _host(self, run: HostRunRecord) -> Host:
        return run.spec or Host(run.host, run.address)

    async def _context(self, rec: ReleaseRecord, run: HostRunRecord, fleet: Fleet, version: str) -> StepContext:
        host = self._host(run)
        transport = await fleet.connect(host)
        package = await fleet.package(version)

        def journal(event: str, detail: dict[str, Any]) -> None:
            self.store.journal(rec.id, run.host, run.step or "", event, detail)

        return StepContext(fleet.runtime, host, transport, package, rec.id, self.clock, journal)

    async def _walk(self, rec: ReleaseRecord, host: str, flow: Sequence[Step], fleet: Fleet) -> None:
        """Run the steps of ``flow`` this host has not done yet, journaling each before and after."""
        run = self.store.host_run(rec.id, host)
        todo = remaining(tuple(flow), [Step(s) for s in run.done_steps])
        if not todo:
            return
        try:
            ctx = await self._context(rec, run, fleet, run.target_version)
        except GrayliftError as exc:
            raise StepFailed(todo[0], exc) from exc
        for step in todo:
            self.store.update_host_run(rec.id, host, step=step.value)
            begin: dict[str, Any] = {"version": ctx.version}
            if step in UNDO_OF:
                begin["undo"] = UNDO_OF[step]  # written before the step runs, so a crash cannot lose it
            self.store.journal(rec.id, host, step.value, "begin", begin)
            started = self.clock.now()
            try:
                detail = await run_step(step, ctx)
            except (GrayliftError, OSError) as exc:
                self.store.journal(rec.id, host, step.value, "failed", {"error": str(exc)})
                raise StepFailed(step, exc) from exc
            detail["seconds"] = round((self.clock.now() - started).total_seconds(), 3)
            self.store.mark_step_done(rec.id, host, step.value)
            self.store.journal(rec.id, host, step.value, "done", detail)

    async def _release_host(self, rec: ReleaseRecord, host: str, fleet: Fleet) -> None:
        run = self.store.host_run(rec.id, host)
        state = HostState(run.state)
        if state is HostState.REVERTING:
            await self._resume_revert(rec, run, fleet)
            return
        if state.settled:
            return
        if state is HostState.PENDING:
            run = self.store.update_host_run(rec.id, host, state=HostState.RUNNING.value,
                                             started_at=self.clock.now())
        if run.previous_version is None and not run.done_steps:
            with contextlib.suppress(GrayliftError):
                ctx = await self._context(rec, run, fleet, run.target_version)
                previous = await read_current_version(ctx)
                if previous and previous != run.target_version:
                    run = self.store.update_host_run(rec.id, host, previous_version=previous)
        flow = ROLLBACK_FLOW if rec.kind == "rollback" else RELEASE_FLOW
        try:
            await self._walk(rec, host, flow, fleet)
        except StepFailed as failed:
            await self._host_failed(rec, host, failed, fleet)
            return
        self.store.update_host_run(rec.id, host, state=HostState.DONE.value, finished_at=self.clock.now())

    async def _host_failed(self, rec: ReleaseRecord, host: str, failed: StepFailed, fleet: Fleet) -> None:
        run = self.store.host_run(rec.id, host)
        error = f"{failed.step.value}: {failed.error}"
        if isinstance(failed.error, HostUnhealthy) or (
            failed.step is Step.PRECHECK and isinstance(failed.error, TransportError)
        ):
            skip = fleet.runtime.strategy.on_unhealthy.value == "skip" and isinstance(failed.error, HostUnhealthy)
            state = HostState.SKIPPED if skip else HostState.FAILED
            self.store.update_host_run(rec.id, host, state=state.value, error=error, finished_at=self.clock.now())
            return
        begun = [Step(s) for s in run.done_steps] + [failed.step]
        await self._revert(rec, run, begun, error, fleet)

    async def _revert(self, rec: ReleaseRecord, run: HostRunRecord, begun: Sequence[Step], error: str,
                      fleet: Fleet) -> None:
        """Put a partly released host back on its previous version and into traffic."""
        undo = undo_steps(begun, has_previous=run.previous_version is not None)
        self.store.journal(rec.id, run.host, "revert", "plan", {"steps": [s.value for s in undo], "error": error})
        if not undo:
            self.store.update_host_run(rec.id, run.host, state=HostState.FAILED.value, error=error,
                                       finished_at=self.clock.now())
            return
        target = run.previous_version or run.target_version
        self.store.reset_host_run(rec.id, run.host, target_version=target, state=HostState.REVERTING.value)
        self.store.update_host_run(rec.id, run.host, error=error)
        await self._resume_revert(rec, self.store.host_run(rec.id, run.host), fleet)

    def _undo_plan(self, rec: ReleaseRecord, host: str) -> tuple[Step, ...]:
        for entry in reversed(self.store.journal_entries(rec.id, host)):
            if entry.step == "revert" and entry.event == "plan":
                return tuple(Step(s) for s in entry.detail["steps"])
        return ()

    async def _resume_revert(self, rec: ReleaseRecord, run: HostRunRecord, fleet: Fleet) -> None:
        undo = self._undo_plan(rec, run.host)
        try:
            await self._walk(rec, run.host, undo, fleet)
        except StepFailed as failed:
            await self._needs_attention(rec, run.host, f"revert failed at {failed}", fleet)
            return
        final = HostState.FAILED
        self.store.update_host_run(rec.id, run.host, state=final.value, finished_at=self.clock.now())

    async def _needs_attention(self, rec: ReleaseRecord, host: str, error: str, fleet: Fleet) -> None:
        """The host could not be put back: leave it out of traffic, but let its alerts fire."""
        run = self.store.host_run(rec.id, host)
        with contextlib.suppress(GrayliftError, StepFailed, OSError):
            ctx = await self._context(rec, run, fleet, run.target_version)
            await run_step(Step.UNMUTE, ctx)
        previous = run.error + "; " if run.error else ""
        self.store.update_host_run(rec.id, host, state=HostState.NEEDS_ATTENTION.value,
                                   error=previous + error, finished_at=self.clock.now())
        self.store.journal(rec.id, host, "attention", "needs_attention", {"error": error})

    # --- canary bake ---------------------------------------------------------------------------

    async def _bake(self, rec: ReleaseRecord, fleet: Fleet) -> None:
        plan = Plan.from_dict(rec.plan)
        canaries = [r for r in self.store.host_runs(rec.id)
                    if r.host in plan.batches[rec.cursor].hosts and r.state == HostState.DONE]
        healthy, detail = True, ""
        for run in canaries:
            try:
                ctx = await self._context(rec, run, fleet, run.target_version)
                result = await health(ctx)
            except GrayliftError as exc:
                healthy, detail = False, f"{run.host}: {exc}"
                break
            if not result.ok:
                healthy, detail = False, f"{run.host}: {result.detail}"
                break
        until = rec.wait_until or self.clock.now()
        outcome = bake_outcome(strategy=fleet.runtime.strategy, now=self.clock.now(), bake_until=until,
                               canaries_healthy=healthy, promote_requested=rec.requested == "promote")
        if outcome is BakeOutcome.WAIT:
            left = (until - self.clock.now()).total_seconds()
            await self.clock.sleep(max(0.05, min(BAKE_CHECK_SECONDS, left)))
        elif outcome is BakeOutcome.PROMOTE:
            self.store.clear_request(rec.id)
            self.store.journal(rec.id, None, "bake", "done", {"promote": "requested" if rec.requested else "auto"})
            promoted = self._move(rec, ReleaseState.RUNNING, "canary promoted", phase="", wait_until=None)
            self._advance(promoted, fleet.runtime.strategy.pause_seconds)
        elif outcome is BakeOutcome.AWAIT_PROMOTION:
            self._move(rec, ReleaseState.AWAITING_PROMOTION,
                       f"canary baked healthy; promote with `graylift promote {rec.id}`", wait_until=None)
        else:
            self.store.journal(rec.id, None, "bake", "failed", {"error": detail})
            self._move(rec, ReleaseState.ROLLING_BACK, f"canary failed during bake ({detail}); rolling back")

    # --- rollback ------------------------------------------------------------------------------

    async def _roll_back(self, rec: ReleaseRecord, fleet: Fleet) -> None:
        """Put every host that has the new version back on its previous one, batch by batch."""
        await self._settle_in_flight(rec, fleet)
        runs = self.store.host_runs(rec.id)
        todo = [r.host for r in runs
                if r.state in (HostState.DONE, HostState.ROLLING_BACK, HostState.NEEDS_ATTENTION)
                and r.previous_version is not None]
        size = batch_size_for(fleet.runtime.strategy, max(1, len(runs)))
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            self.store.update_release(rec.id, phase=f"rollback {start // size + 1}")
            self.store.journal(rec.id, None, f"rollback {start // size + 1}", "begin", {"hosts": chunk})
            await self._run_hosts(rec, chunk, fleet, rollback=True)
        runs = self.store.host_runs(rec.id)
        stuck = [r.host for r in runs if r.state == HostState.NEEDS_ATTENTION]
        rec = self.store.get_release(rec.id)
        if stuck:
            self._move(rec, ReleaseState.PAUSED, f"rollback left {len(stuck)} host(s) needing attention: "
                       f"{', '.join(stuck)}; fix them and `graylift resume {rec.id}`")
            return
        if rec.previous_version:
            self.store.record_deployed(rec.app, rec.env, rec.previous_version, rec.id)
        rolled = sum(1 for r in runs if r.state == HostState.ROLLED_BACK)
        self._move(rec, ReleaseState.ROLLED_BACK,
                   f"{rolled} host(s) back on {rec.previous_version or 'their previous version'}. {rec.message}")

    async def _rollback_host(self, rec: ReleaseRecord, host: str, fleet: Fleet) -> None:
        run = self.store.host_run(rec.id, host)
        if run.state in (HostState.DONE, HostState.NEEDS_ATTENTION):
            if run.previous_version is None:
                return
            run = self.store.reset_host_run(rec.id, host, target_version=run.previous_version,
                                            state=HostState.ROLLING_BACK.value)
        elif run.state != HostState.ROLLING_BACK:
            return
        try:
            await self._walk(rec, host, ROLLBACK_FLOW, fleet)
        except StepFailed as failed:
            await self._needs_attention(rec, host, f"rollback failed at {failed}", fleet)
            return
        self.store.update_host_run(rec.id, host, state=HostState.ROLLED_BACK.value, finished_at=self.clock.now())
