"""The release loop: the one place with concurrency. It moves a release from state to state.

A release is data in the store: its plan (batches), a cursor (the batch being worked on) and per-host
step states. :meth:`Engine.drive` claims the release's lease, reads that data, does the next thing,
writes the result (every write fenced by the lease), and loops until the release is finished or paused.
Every wait is a timestamp in the store (``wait_until``), so a controller that dies and is restarted picks
up exactly where the data says, re-running at most the one step per host that was in progress.

Safe points: requests (pause, abort, rollback, promote) are read between hosts, between batches and
during waits. Hosts already in flight finish their pass (or are reverted) first.

Every pass over the fleet (a batch, a rollback wave, a retry) counts the hosts that are out or not
serving in one place, :meth:`Engine.out_of_service`, and never takes 50% or more out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from datetime import timedelta
from typing import Any

from graylift.core.bluegreen import is_blue_green
from graylift.core.plan import Batch, Plan, batch_size_for, check_cap, wave
from graylift.core.policy import Verdict, after_batch
from graylift.core.state import HostState, ReleaseKind, ReleaseState, Request
from graylift.engine.bluegreen import BlueGreenPhase
from graylift.engine.canary import CanaryPhase
from graylift.engine.hosts import HostRunner
from graylift.engine.lease import Lease, controller_id
from graylift.engine.prestage import PrestagePhase
from graylift.errors import LeaseLost, PlanError
from graylift.ports import Clock, Fleet, SystemClock
from graylift.runtime import HostRead
from graylift.store import HostRunRecord, ReleaseRecord, Store

FleetFactory = Callable[[ReleaseRecord], Awaitable[Fleet]]


class Engine:
    """Drives releases through the store. One Engine per controller process."""

    def __init__(self, store: Store, fleet_factory: FleetFactory, *, clock: Clock | None = None,
                 owner: str | None = None, reads: dict[int, dict[str, HostRead]] | None = None) -> None:
        """``reads``: release id -> the reads of its hosts its preflight took in this process, which the first
        drive of that release here takes (:meth:`graylift.engine.ahead.ReadsAhead.seed`)."""
        self.store = store
        self.fleet_factory = fleet_factory
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or controller_id()
        self.reads = reads if reads is not None else {}

    async def drive(self, release_id: int) -> ReleaseRecord:
        """Work on the release until it is finished or paused; returns its final record.

        Raises LeaseLost (having touched no host since) when another controller took the release over.
        """
        async with self._held(release_id) as drive:
            return await drive.loop(release_id)

    async def settle(self, release_id: int, hosts: Collection[str], *, again: bool) -> None:
        """Settle ``hosts`` a crash caught mid-pass, under the release's lease (StateError while a live
        controller holds it): a forward pass is reverted, a revert or rollback finished. With ``again`` a host
        reverted to its previous version is queued again, so the release does it anew when it goes on."""
        async with self._held(release_id) as drive:
            await drive.hosts.settle(drive.store.get_release(release_id), hosts, again=again)

    @contextlib.asynccontextmanager
    async def _held(self, release_id: int) -> AsyncIterator[_Drive]:
        """The release under this controller's lease (kept alive while the body runs), with its fleet."""
        lease = Lease.claim(self.store, release_id, self.owner, self.clock)
        try:
            async with lease.kept():
                fleet = await self.fleet_factory(self.store.get_release(release_id))
                drive = _Drive(self.store.fenced(lease.fence), fleet, self.clock, lease)
                drive.hosts.ahead.seed(self.reads.pop(release_id, {}))
                try:
                    yield drive
                finally:
                    try:
                        await drive.hosts.close()
                    finally:
                        await fleet.close()
        finally:
            lease.release()


class _Drive(CanaryPhase, PrestagePhase, BlueGreenPhase):
    """One controller driving one release under its lease."""

    def __init__(self, store: Store, fleet: Fleet, clock: Clock, lease: Lease) -> None:
        self.store, self.fleet, self.clock, self.lease = store, fleet, clock, lease
        self.hosts = HostRunner(store, fleet, clock, lease)
        self.strategy = fleet.runtime.strategy

    def move(self, rec: ReleaseRecord, state: ReleaseState, message: str | None = None, **fields: Any
             ) -> ReleaseRecord:
        return self.store.transition(rec.id, state, message, **fields)

    async def loop(self, rid: int) -> ReleaseRecord:
        while True:
            self.lease.check()
            rec = self.store.get_release(rid)
            if rec.finished:
                return rec
            if await self.finish_switch(rec) or await self.finish_baseline(rec):
                continue
            if await self.handle_request(rec):
                continue
            if rec.state is ReleaseState.PAUSED:
                return rec
            if rec.state is ReleaseState.PENDING:
                self.move(rec, ReleaseState.RUNNING, f"started by {rec.started_by}")
            elif rec.state is ReleaseState.RUNNING and self.prestage_due(rec):
                await self.prestage(rec)
            elif rec.state is ReleaseState.RUNNING:
                await (self.blue_green(rec) if is_blue_green(rec.plan) else self.run_next_batch(rec))
            elif rec.state is ReleaseState.BAKING:
                await self.bake(rec)
            elif rec.state is ReleaseState.AWAITING_PROMOTION:
                await self.clock.sleep(1.0)
            elif rec.state is ReleaseState.ROLLING_BACK:
                await (self.switch_back(rec) if is_blue_green(rec.plan) else self.roll_back(rec))

    async def handle_request(self, rec: ReleaseRecord) -> bool:
        """Act on a queued request at this safe point. True if the loop should look again."""
        req, state = rec.requested, rec.state
        if req is None:
            return False
        if req is Request.PROMOTE:
            if state is ReleaseState.AWAITING_PROMOTION:
                self.store.clear_request(rec.id)
                self.advance(self.move(rec, ReleaseState.RUNNING, "promoted"), self.strategy.pause_seconds)
                return True
            if state is ReleaseState.BAKING:
                return False  # read by the bake itself
        self.store.clear_request(rec.id)
        if req is Request.PAUSE and state is not ReleaseState.PAUSED:
            await self.finish_in_flight(rec)
            self.move(rec, ReleaseState.PAUSED, f"paused on request; `graylift resume {rec.id}` goes on")
        elif req is Request.ROLLBACK and state is not ReleaseState.ROLLING_BACK and rec.kind is ReleaseKind.RELEASE:
            self.move(rec, ReleaseState.ROLLING_BACK, "rolling back on request")
        elif req is Request.ABORT:
            await self.hosts.settle(rec)
            runs = self.store.host_runs(rec.id)
            on_new = sum(1 for r in runs if r.state is HostState.DONE)
            stuck = [r.host for r in runs if r.state is HostState.NEEDS_ATTENTION]
            note = f"; {len(stuck)} need attention: {', '.join(stuck)}" if stuck else ""
            self.move(rec, ReleaseState.ABORTED,
                      f"aborted: {on_new} host(s) on {rec.version}, the others on their previous version{note}; "
                      f"`graylift rollback {rec.app} --env {rec.env}` puts the previous version back")
        return True

    async def finish_in_flight(self, rec: ReleaseRecord) -> None:
        """Hosts caught mid-flow by a crash finish their pass first: a paused release leaves none half-done."""
        runs = self.store.host_runs(rec.id)
        forward = [r.host for r in runs if r.state in (HostState.RUNNING, HostState.REVERTING)]
        await self.each(forward, self.hosts.release, rec)

    def advance(self, rec: ReleaseRecord, pause: float) -> None:
        """Move the cursor past the current batch, with the configured pause before the next one."""
        plan = Plan.from_dict(rec.plan)
        cursor = rec.cursor + 1
        if 0 < cursor < len(plan.batches) and pause > 0 and plan.batches[cursor].hosts:
            until = self.clock.now() + timedelta(seconds=pause)
            self.store.journal(rec.id, None, "pause", "wait", {"seconds": pause})
            self.store.update_release(rec.id, cursor=cursor, phase="pause", wait_until=until,
                                      message=f"pause of {pause:g}s before {plan.batches[cursor].label}")
        else:
            self.store.update_release(rec.id, cursor=cursor, phase="", wait_until=None)

    async def each(self, hosts: Sequence[str], one: Callable[[ReleaseRecord, str], Awaitable[None]],
                   rec: ReleaseRecord, *, stop_on_request: bool = False) -> None:
        """Run ``one`` on the hosts, at most ``max_parallel`` at a time; a lost lease cancels them all."""
        limit = asyncio.Semaphore(max(1, self.strategy.max_parallel))

        async def guarded(name: str) -> None:
            async with limit:
                if stop_on_request and self.store.requested(rec.id) in (Request.PAUSE, Request.ABORT, Request.ROLLBACK):
                    return  # safe point: not started
                await one(rec, name)

        try:
            async with asyncio.TaskGroup() as group:
                for name in hosts:
                    group.create_task(guarded(name))
        except BaseExceptionGroup as failed:  # the others were cancelled: raise the cause, a lost lease first
            raise _first(failed) from None

    # --- who is out ------------------------------------------------------------------------------

    def out_of_service(self, rec: ReleaseRecord, runs: Sequence[HostRunRecord] | None = None) -> set[str]:
        """Every host out or not serving, the one count behind the 50% rule of every pass: skipped, failed,
        needing attention, caught mid-pass, in maintenance, unhealthy before the release, and hosts an
        earlier release left needing attention (the CMDB's host health)."""
        runs = self.store.host_runs(rec.id) if runs is None else runs
        plan = Plan.from_dict(rec.plan)
        out = {r.host for r in runs if r.state in (HostState.SKIPPED, HostState.NEEDS_ATTENTION)}
        # a failed host that was reverted (or never touched past its pre-check) serves; one that failed its
        # pre-check (unreachable, a layout refused) may not
        out |= {r.host for r in runs if r.state is HostState.FAILED and not r.done_steps}
        out |= {r.host for r in runs if r.state.in_flight and (r.done_steps or r.step)}
        out |= {s.host for s in plan.skipped}
        on_target = {r.host for r in runs if r.state in (HostState.DONE, HostState.ROLLED_BACK)}
        out |= set(plan.known_out) - on_target  # found unhealthy at the start, not yet fixed by this release
        out |= set(self.store.host_health(rec.app, rec.env))
        return out

    # --- batches -------------------------------------------------------------------------------

    async def run_next_batch(self, rec: ReleaseRecord) -> None:
        plan = Plan.from_dict(rec.plan)
        if rec.wait_until is not None and self.clock.now() < rec.wait_until:
            await self.clock.sleep(min(1.0, (rec.wait_until - self.clock.now()).total_seconds()))
            return
        if rec.cursor >= len(plan.batches):
            self.finish_success(rec)
            return
        batch = plan.batches[rec.cursor]
        runs = {r.host: r for r in self.store.host_runs(rec.id)}
        pending = [h for h in batch.hosts if not runs[h].state.settled]
        try:
            check_cap(len(self.out_of_service(rec, list(runs.values())) | set(pending)), plan.cluster_size,
                      batch.label, self.strategy)
        except PlanError as exc:
            self.move(rec, ReleaseState.PAUSED, f"paused before {batch.label}: {exc}")
            return
        worked = await self.work_batch(rec, batch, pending)
        if worked is None:
            return  # stopped at a safe point by a request; the loop handles it
        rec, runs = worked
        failed_here = sum(1 for h in batch.hosts if runs[h].state.counts_as_failure)
        failed_total = sum(1 for r in runs.values() if r.state.counts_as_failure)
        if batch.hosts:
            self.store.journal(rec.id, None, batch.label, "done", {"failed": failed_here, "failed_total": failed_total})
        decision = after_batch(strategy=self.strategy, canary=batch.canary, failed_in_batch=failed_here,
                               failed_total=failed_total, may_roll_back=rec.kind is ReleaseKind.RELEASE)
        if decision.verdict is Verdict.PAUSE:
            self.move(rec, ReleaseState.PAUSED,
                      f"paused after {batch.label}: {decision.reason} ({_failed_hosts(runs)}); fix and "
                      f"`graylift retry {rec.id}`, or `graylift rollback {rec.app} --env {rec.env}`")
        elif decision.verdict is Verdict.ROLLBACK:
            self.move(rec, ReleaseState.ROLLING_BACK,
                      f"rolling back after {batch.label}: {decision.reason} ({_failed_hosts(runs)})")
        elif batch.canary:
            await self.after_canary(rec, plan, runs)
        else:
            self.advance(rec, self.strategy.pause_seconds)

    async def work_batch(self, rec: ReleaseRecord, batch: Batch, pending: Sequence[str]
                         ) -> tuple[ReleaseRecord, dict[str, HostRunRecord]] | None:
        """Release the ``pending`` hosts of ``batch`` (journaled); then the release and its host runs, or None
        when a request stopped the batch at a safe point with hosts unsettled."""
        if pending:
            self.store.update_release(rec.id, phase=batch.label, wait_until=None,
                                      message=f"{batch.label}: {len(batch.hosts)} host(s)")
            self.store.journal(rec.id, None, batch.label, "begin", {"hosts": list(batch.hosts)})
            if batch.canary:
                await self.canary_batch(rec, Plan.from_dict(rec.plan), pending)
            else:
                self.read_next_ahead(rec, batch)
                try:
                    await self.each(pending, self.hosts.release, rec, stop_on_request=True)
                finally:
                    self.hosts.ahead.disarm()
        rec = self.store.get_release(rec.id)
        runs = {r.host: r for r in self.store.host_runs(rec.id)}
        if any(not runs[h].state.settled for h in batch.hosts):
            return None
        return rec, runs

    def read_next_ahead(self, rec: ReleaseRecord, batch: Batch) -> None:
        """The next batch's hosts are read for their pre-checks while this batch restarts (not after a canary: its
        bake may be long), off the critical path: see :meth:`graylift.engine.ahead.ReadsAhead.arm`."""
        batches = Plan.from_dict(rec.plan).batches
        if batch.index + 1 < len(batches) and not batch.canary:
            self.hosts.ahead.arm(rec, batches[batch.index + 1].hosts)

    def finish_success(self, rec: ReleaseRecord) -> None:
        runs = self.store.host_runs(rec.id)
        done = sum(1 for r in runs if r.state is HostState.DONE)
        skipped = len(runs) - done
        pinned = (rec.plan.get("packages") or {}).get(rec.version) or {}
        if rec.kind is ReleaseKind.ROLLBACK:
            self.store.record_deployed(rec.app, rec.env, rec.version, rec.id, sha256=pinned.get("sha256"),
                                       source="rollback")
            if rec.previous_version and rec.previous_version != rec.version:
                self.store.mark_bad(rec.app, rec.env, rec.previous_version, release_id=rec.id,
                                    reason=f"rolled back by release #{rec.id}")
        else:
            self.store.record_deployed(rec.app, rec.env, rec.version, rec.id, sha256=pinned.get("sha256"))
        note = f"; {skipped} host(s) not on it (see status)" if skipped else ""
        self.move(rec, ReleaseState.SUCCEEDED, f"{done} host(s) on {rec.version}{note}")

    # --- rolling back --------------------------------------------------------------------------

    async def roll_back(self, rec: ReleaseRecord) -> None:
        """Every host that got the new version goes back to its own previous one, in waves under the cap."""
        await self.hosts.settle(rec)
        self.queue_back_pass(rec)
        rec = self.store.get_release(rec.id)
        size = batch_size_for(self.strategy, Plan.from_dict(rec.plan).cluster_size)
        number = 0
        while True:
            self.lease.check()
            if rec.requested is Request.ABORT:
                return  # the loop settles and aborts
            runs = self.store.host_runs(rec.id)
            todo = [r.host for r in runs if r.state is HostState.ROLLING_BACK]
            if not todo:
                break
            hosts = wave(todo, self.out_of_service(rec, runs), cluster_size=Plan.from_dict(rec.plan).cluster_size,
                         size=size, strategy=self.strategy)
            if not hosts:
                out = len(self.out_of_service(rec))
                self.move(rec, ReleaseState.PAUSED,
                          f"rollback paused: {len(todo)} host(s) still to roll back, but {out} of "
                          f"{Plan.from_dict(rec.plan).cluster_size} are out or not serving and graylift never "
                          f"takes 50% or more out; fix hosts, then `graylift resume {rec.id}`")
                return
            number += 1
            self.store.update_release(rec.id, phase=f"rollback {number}")
            self.store.journal(rec.id, None, f"rollback {number}", "begin", {"hosts": list(hosts)})
            await self.each(hosts, self.hosts.roll_back, rec)
            rec = self.store.get_release(rec.id)
        runs = self.store.host_runs(rec.id)
        stuck = [r.host for r in runs if r.host in rec.plan.get("back_pass", []) and
                 r.state is HostState.NEEDS_ATTENTION]
        if stuck:
            self.move(rec, ReleaseState.PAUSED,
                      f"rollback left {len(stuck)} host(s) needing attention: {', '.join(stuck)}; fix them and "
                      f"`graylift retry {rec.id}` (goes on rolling back), or `graylift abort {rec.id}`")
            return
        rolled = sum(1 for r in runs if r.state is HostState.ROLLED_BACK)
        self.finish_rolled_back(rec, rolled, f"{rolled} host(s) back on "
                                f"{rec.previous_version or 'their previous version'}. {rec.message}")

    def finish_rolled_back(self, rec: ReleaseRecord, rolled: int, message: str) -> None:
        """The release is rolled back: the previous version is the deployed one again, and the release's
        version is marked bad (unless no host moved: a first install has nothing to go back to)."""
        if rolled and rec.previous_version:
            self.store.record_deployed(rec.app, rec.env, rec.previous_version, rec.id, source="rollback")
        if rolled:
            self.store.mark_bad(rec.app, rec.env, rec.version, release_id=rec.id,
                                reason=f"release #{rec.id} rolled back")
        self.move(rec, ReleaseState.ROLLED_BACK, message)

    def queue_back_pass(self, rec: ReleaseRecord) -> None:
        """Once per release: every host that got the new version (done, or left needing attention on it) is
        queued to go back to what its pre-check found. Hosts never touched stay as they are. The goal of each
        is kept in the plan (``back_pass``): a retry of the rollback goes to the same place."""
        if "back_pass" in rec.plan:
            return
        queued: dict[str, dict[str, str | None]] = {}
        for run in self.store.host_runs(rec.id):
            if run.state not in (HostState.DONE, HostState.NEEDS_ATTENTION):
                continue
            if run.found is None or run.found.fresh or run.found.version is None:
                continue  # a first install has nothing to go back to
            self.store.reset_host_run(rec.id, run.host, target_version=run.found.version,
                                      target_dir=run.found.current_dir, state=HostState.ROLLING_BACK)
            queued[run.host] = {"version": run.found.version, "dir": run.found.current_dir}
        self.store.update_release(rec.id, plan=rec.plan | {"back_pass": queued})
        self.store.journal(rec.id, None, "rollback", "queued", {"hosts": sorted(queued)})


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return next((e for e in leaves if isinstance(e, LeaseLost)), leaves[0])


def _failed_hosts(runs: dict[str, HostRunRecord], most: int = 3) -> str:
    """The failed hosts and why, for a message: the first ``most`` of them, and how many more."""
    failed = [r for r in runs.values() if r.state.counts_as_failure]
    said = "; ".join(f"{r.host} {r.state.value}: {r.error or 'see its journal'}" for r in failed[:most])
    return said + (f"; {len(failed) - most} more" if len(failed) > most else "")


__all__ = ["Engine"]
