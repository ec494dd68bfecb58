"""One host through one pass: walk its steps, revert it, roll it back, or leave it needing attention.

Every step is journaled before and after, and the lease is checked before each one acts: a controller
that lost its lease stops before touching the host again. Stop, switch, start and health go to the host as
one command where the runtime allows it (:func:`graylift.steps.restart`): begun together, done one by one.
What the pass's pre-check found (the layout, the release ``current`` points at) is the one source of the
host's previous version and of its undo.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from graylift.core.bluegreen import IDLE_FLOW, idle_undo, is_blue_green
from graylift.core.flow import RELEASE_FLOW, ROLLBACK_FLOW, UNDO_OF, OnStepFailure, Step, on_step_failure, remaining
from graylift.core.flow import undo_steps as plan_undo
from graylift.core.layout import Found
from graylift.core.model import Package
from graylift.core.state import HostState, ReleaseKind
from graylift.engine.ahead import ReadsAhead
from graylift.engine.crash import crash_point
from graylift.engine.lease import Guarded, Lease
from graylift.engine.targets import Targets
from graylift.engine.writes import StepWrites
from graylift.errors import BackendsFailed, GrayliftError, LeaseLost, TransportError
from graylift.ports import Clock, Fleet, Transport
from graylift.reading import acts_through_the_host, survey_and_health
from graylift.runtime import HostRead, StepContext, Target
from graylift.steps import RESTART, HostUnhealthy, RestartFailed, restart, restarts_at_once, run_step
from graylift.store import HostRunRecord, ReleaseRecord, Store
from graylift.store.runs import FinishStep


@dataclass
class StepFailed(Exception):
    step: Step
    error: BaseException

    def __str__(self) -> str:
        return f"{self.step.value}: {self.error}"


ALWAYS_ENSURED = (Step.PUT_BACK, Step.UNMUTE)
"""Run even for a host already on the target: it may have been left out of traffic."""


class HostRunner:
    """Moves single hosts. ``store`` is the driver's fenced store; ``lease`` is its lease: ``check_lease`` raises
    LeaseLost, and every host command carries the lease's token (:meth:`connect`)."""

    def __init__(self, store: Store, fleet: Fleet, clock: Clock, lease: Lease) -> None:
        self.store, self.fleet, self.clock, self.lease = store, fleet, clock, lease
        self.check_lease = check_lease = lease.check
        self.writes = StepWrites(store)
        self.targets = Targets(store, fleet)
        rt = fleet.runtime
        self.ahead = ReadsAhead(clock, limit=rt.strategy.precheck_ahead_seconds, parallel=rt.strategy.max_parallel,
                                read=self.read)
        deploy_dirs = rt.deploy_dirs
        # every backend, health probe and the deploy dir behind the lease (the transport is, in connect: a shell
        # probe acts only through it, and stays a shell probe, so it goes to the host as the wiring's probes do)
        self.runtime = replace(
            rt, switches=[Guarded(s, check_lease) for s in rt.switches],
            silencers=[Guarded(s, check_lease) for s in rt.silencers],
            probes=[p if acts_through_the_host(p) else Guarded(p, check_lease) for p in rt.probes],
            deploy_dirs=(lambda t: Guarded(deploy_dirs(t), check_lease)) if deploy_dirs is not None else None)

    # --- the pre-check read ahead ---------------------------------------------------------------

    async def read(self, rec: ReleaseRecord, host: str) -> HostRead | None:
        """The pre-check's reads of ``host`` (its survey and health), for :class:`ReadsAhead`: None when its pass
        has begun, or when it cannot be read now (its own pre-check reads it, and says what is wrong)."""
        try:
            run = self.store.host_run(rec.id, host)
            if run.state is not HostState.PENDING or run.done_steps or run.step:
                return None
            transport = await self.connect(run)
            ctx = StepContext.open(self.runtime, run.host_spec, transport, await self.targets.target(rec, run), rec.id,
                                   self.clock)
            found, health = await survey_and_health(ctx)
        except (GrayliftError, OSError):
            return None
        return HostRead(found, health, self.clock.now())

    async def close(self) -> None:
        await self.ahead.close()

    # --- walking -------------------------------------------------------------------------------

    async def connect(self, run: HostRunRecord) -> Transport:
        """The host's transport (the connector keeps one connection per host), behind the lease: a controller
        that lost its lease runs no further command, even in the middle of a step, and the host itself refuses
        one sent after a newer lease touched it (:mod:`graylift.core.fence`)."""
        self.check_lease()
        return self.lease.on_host(await self.fleet.connect(run.host_spec), self.fleet.runtime.deploy_dir)

    async def walk(self, rec: ReleaseRecord, host: str, flow: Sequence[Step]) -> bool:
        """Run the steps of ``flow`` the host has not done yet. True if its pre-check found it already on
        the target: then only put-back and unmute run (idempotent: it is in traffic and unmuted after)."""
        run = self.store.host_run(rec.id, host)
        todo = remaining(tuple(flow), [Step(s) for s in run.done_steps])
        if not todo:
            return False
        try:
            transport = await self.connect(run)
        except GrayliftError as exc:
            raise StepFailed(todo[0], exc) from exc
        already = False
        finished: FinishStep | None = None  # written with the next begin (with the run as it is then)
        ran_with: set[Step] = set()  # steps a one-command restart ran with the step before them
        surveyed = False  # the step before was this walk's pre-check: what it read is what the host has now
        muted: dict[str, str] = {}  # silencer -> the silence this walk's mute made or found: its unmute's to expire
        try:
            for at, step in enumerate(todo):
                if step in ran_with or (already and step not in ALWAYS_ENSURED):
                    continue
                self.check_lease()  # a controller that lost its lease never acts again
                try:
                    target = await self.targets.target(rec, run)
                except GrayliftError as exc:
                    raise StepFailed(step, exc) from exc
                # a forward pass's pre-check (never a back pass's: its host changed since) may use a read ahead
                ahead = await self.ahead.take(host) \
                    if step is Step.PRECHECK and run.state is HostState.RUNNING and self.ahead else None
                ctx = StepContext.open(
                    self.runtime, run.host_spec, transport, target, rec.id, self.clock,
                    self._journal(rec.id, host, step), found=run.found, surveyed_now=surveyed, ahead=ahead,
                    silences=muted,
                    require_healthy=run.state is HostState.RUNNING and rec.kind is ReleaseKind.RELEASE
                    and not is_blue_green(rec.plan),  # an idle host is restarted anyway; its health after counts
                    rollback_versions=self.targets.rollback_versions(rec) if step is Step.STAGE else ())
                at_once = todo[at:at + len(RESTART)] == RESTART and restarts_at_once(ctx)
                begin: dict[str, Any] = {"version": target.version, "dir": target.dir}
                if step in UNDO_OF:
                    begin["undo"] = UNDO_OF[step]  # written before the step runs, so a crash cannot lose it
                if at_once:  # begun together: one undo covers them (core.flow.undo_steps)
                    begin["with"] = [s.value for s in RESTART[1:]]
                if finished is None:
                    self.store.begin_step(rec.id, host, step.value, begin)
                else:  # with the other hosts that finish a step in this turn of the loop: one transaction
                    writing, finished = finished, None
                    try:
                        run = await self.writes.finish(replace(writing, run=run, then=(step.value, begin)))
                    except asyncio.CancelledError:
                        raise  # the write was queued: it is committed all the same
                    except BaseException:
                        finished = writing  # not written: the finally tries once more
                        raise
                started = self.clock.now()
                crash_point("before", step.value, host)
                also: tuple[tuple[str, dict[str, Any]], ...] = ()
                try:
                    if at_once:
                        (_, detail), *rest = await restart(ctx)
                        also, ran_with = tuple((s.value, d) for s, d in rest), ran_with | set(RESTART[1:])
                    else:
                        detail = await run_step(step, ctx)
                except LeaseLost:
                    raise
                except RestartFailed as exc:
                    self._restart_failed(rec, run, exc)
                except (GrayliftError, OSError) as exc:
                    self.store.journal(rec.id, host, step.value, "failed", _failure_detail(exc))
                    raise StepFailed(step, exc) from exc
                crash_point("after", RESTART[-1].value if at_once else step.value, host)
                seconds = round((self.clock.now() - started).total_seconds(), 3)
                detail = {"seconds": seconds} | detail if at_once else detail | {"seconds": seconds}
                found = Found.from_json(detail["found"]) if step is Step.PRECHECK else None
                if found is not None:  # the next step's target and context: this pre-check's, not the stored one's
                    run = replace(run, found=found)
                surveyed = found is not None
                if step is Step.MUTE:
                    muted = dict(detail.get("silences") or {})
                if step is Step.TAKE_OUT:  # the first of its batch out: the next batch's reads start
                    self.ahead.first_out()
                already = already or bool(found is not None and detail.get("already_on_target"))
                # nothing to stage or restart on a host already on the target: it is only put back and unmuted
                skipped = [s.value for s in todo if s not in (Step.PRECHECK, *ALWAYS_ENSURED)] if found and already \
                    else []
                finished = FinishStep(run, step.value, detail, found, skipped, also=also)
        finally:
            if finished is not None and self._lease_held():
                self.store.finish_steps([replace(finished, run=run)])
        return already

    def _restart_failed(self, rec: ReleaseRecord, run: HostRunRecord, failed: RestartFailed) -> NoReturn:
        """A one-command restart failed at ``failed.step``: the steps before it are done, that one failed."""
        if failed.done:
            (first, detail), *rest = failed.done
            self.store.finish_step(run, first.value, detail, also=tuple((s.value, d) for s, d in rest))
        self.store.journal(rec.id, run.host, failed.step.value, "failed", _failure_detail(failed.error))
        raise StepFailed(failed.step, failed.error) from failed.error

    def _lease_held(self) -> bool:
        try:
            self.check_lease()
        except LeaseLost:
            return False
        return True

    def _journal(self, release_id: int, host: str, step: Step) -> Any:
        def write(event: str, detail: dict[str, Any]) -> None:
            self.store.journal(release_id, host, step.value, event, detail)

        return write

    # --- a forward pass ------------------------------------------------------------------------

    async def _run_unless_reverting(self, rec: ReleaseRecord, host: str) -> HostRunRecord | None:
        """The host's run; None when it was mid-revert (a crash caught it), which is finished first."""
        run = self.store.host_run(rec.id, host)
        if run.state is HostState.REVERTING:
            await self.resume_revert(rec, run)
            return None
        return run

    async def release(self, rec: ReleaseRecord, host: str) -> None:
        run = await self._run_unless_reverting(rec, host)
        if run is None or run.state.settled:
            return
        if run.state is HostState.PENDING:
            self.store.update_host_run(rec.id, host, state=HostState.RUNNING, started_at=self.clock.now())
        await self._pass(rec, host, IDLE_FLOW if is_blue_green(rec.plan) else RELEASE_FLOW, back=False)

    async def _pass(self, rec: ReleaseRecord, host: str, flow: Sequence[Step], *, back: bool) -> None:
        """Walk ``flow`` on the host (the release's, or with ``back`` the rollback's): done (rolled back) when
        every step succeeds, else what :meth:`failed` decides."""
        try:
            already = await self.walk(rec, host, flow)
        except StepFailed as failed:
            await self.failed(rec, host, failed, back=back)
            return
        self.succeeded(rec, host, HostState.ROLLED_BACK if back else HostState.DONE, already=already)

    def succeeded(self, rec: ReleaseRecord, host: str, state: HostState, *, already: bool = False,
                  warning: str | None = None) -> None:
        self.store.update_host_run(rec.id, host, state=state, finished_at=self.clock.now(), error=warning,
                                   forget_attention=(rec.app, rec.env))

    async def failed(self, rec: ReleaseRecord, host: str, failed: StepFailed, *, back: bool) -> None:
        """A step failed: skip, revert, leave needing attention, or warn (:func:`core.flow.on_step_failure`)."""
        run = self.store.host_run(rec.id, host)
        error = f"{failed.step.value}: {failed.error}"
        action = on_step_failure(failed.step)
        if action is OnStepFailure.SKIP_OR_FAIL:
            if back:
                await self.needs_attention(rec, host, f"could not roll it back ({error}); it still serves "
                                           "what it served", {})
                return
            skip = isinstance(failed.error, HostUnhealthy) and \
                self.fleet.runtime.strategy.on_unhealthy.value == "skip"
            state = HostState.SKIPPED if skip else HostState.FAILED
            self.store.update_host_run(rec.id, host, state=state, error=error, finished_at=self.clock.now())
            return
        if action is OnStepFailure.ATTENTION:
            err = failed.error
            backends = err.failed if isinstance(err, BackendsFailed) else {"traffic": str(err)}
            await self.needs_attention(rec, host, f"healthy on {run.target_version} but {error}", backends)
            return
        if action is OnStepFailure.WARN:
            self.succeeded(rec, host, HostState.ROLLED_BACK if back else HostState.DONE,
                           warning=f"{error} (the silence ends by itself at its end time)")
            return
        begun = [Step(s) for s in run.done_steps] + [failed.step]
        await self.revert(rec, run, begun, error, back=back)

    # --- reverting -----------------------------------------------------------------------------

    async def revert(self, rec: ReleaseRecord, run: HostRunRecord, begun: Sequence[Step], error: str, *,
                     back: bool) -> None:
        """Put a partly moved host back where its pre-check found it: on that release, in traffic."""
        found = run.found
        has_previous = found is not None and not found.fresh
        idle = is_blue_green(rec.plan) and not back  # an idle host goes back to what it ran, out of traffic
        undo = (idle_undo if idle else plan_undo)(begun, has_previous=has_previous)
        self.store.journal(rec.id, run.host, "revert", "plan",
                           {"steps": [s.value for s in undo], "error": error, "back": back})
        if not undo:
            final = HostState.NEEDS_ATTENTION if back else HostState.FAILED
            self.store.update_host_run(rec.id, run.host, state=final, error=error, finished_at=self.clock.now())
            return
        if has_previous:
            assert found is not None and found.version is not None
            self.store.reset_host_run(rec.id, run.host, target_version=found.version, target_dir=found.current_dir,
                                      state=HostState.REVERTING)
        else:
            self.store.reset_host_run(rec.id, run.host, target_version=run.target_version,
                                      target_dir=run.target_dir, state=HostState.REVERTING)
        self.store.update_host_run(rec.id, run.host, error=error)
        await self.resume_revert(rec, self.store.host_run(rec.id, run.host))

    def _revert_plan(self, rec: ReleaseRecord, host: str) -> tuple[tuple[Step, ...], bool]:
        for entry in reversed(self.store.journal_entries(rec.id, host)):
            if entry.step == "revert" and entry.event == "plan":
                return tuple(Step(s) for s in entry.detail["steps"]), bool(entry.detail.get("back"))
        return (), False

    async def resume_revert(self, rec: ReleaseRecord, run: HostRunRecord) -> None:
        undo, back = self._revert_plan(rec, run.host)
        try:
            await self.walk(rec, run.host, undo)
        except StepFailed as failed:
            backends = failed.error.failed if isinstance(failed.error, BackendsFailed) else {}
            await self.needs_attention(rec, run.host, f"revert failed at {failed}", backends)
            return
        if back:  # a rollback that had to be undone: the host serves what it served, not the rollback target
            await self.needs_attention(rec, run.host, "the rollback was reverted; it serves what it served before",
                                       {})
            return
        if run.found is None or run.found.fresh:  # nothing to go back to: it is left stopped, out of traffic
            await self.needs_attention(rec, run.host, "its first install failed: it is left stopped and out of "
                                       "traffic until a release succeeds on it", {})
            return
        self.store.update_host_run(rec.id, run.host, state=HostState.FAILED, finished_at=self.clock.now())

    async def needs_attention(self, rec: ReleaseRecord, host: str, error: str, backends: dict[str, str]) -> None:
        """The host could not be put back completely: say which backends, let its alerts fire, and record it
        in the CMDB's host health so every later release counts it as out until it is fixed."""
        run = self.store.host_run(rec.id, host)
        with contextlib.suppress(GrayliftError, StepFailed, OSError):
            transport = await self.connect(run)
            target = Target(run.target_version, run.target_dir or run.target_version, None, _never)
            ctx = StepContext.open(self.runtime, run.host_spec, transport, target, rec.id, self.clock,
                                   self._journal(rec.id, host, Step.UNMUTE), found=run.found)
            await run_step(Step.UNMUTE, ctx)
        backends = dict(backends) | await self._still_out(run)
        previous = run.error + "; " if run.error and run.error not in error else ""
        self.store.update_host_run(rec.id, host, state=HostState.NEEDS_ATTENTION, error=previous + error,
                                   attention=backends or None, finished_at=self.clock.now())
        self.store.journal(rec.id, host, "attention", "needs_attention", {"error": error, "backends": backends})
        self.store.mark_needs_attention(rec.app, rec.env, host, reason=previous + error, backends=backends,
                                        release_id=rec.id)

    async def _still_out(self, run: HostRunRecord) -> dict[str, str]:
        """Every backend that has the host out (asked, read-only), so the record names each of them."""
        out: dict[str, str] = {}
        for switch in self.runtime.switches:
            try:
                if await switch.is_out(run.host_spec):
                    out[switch.name] = "left out of traffic"
            except LeaseLost:
                raise
            except GrayliftError as exc:
                out[switch.name] = f"could not be read: {exc}"
        return out

    # --- a back pass ---------------------------------------------------------------------------

    async def roll_back(self, rec: ReleaseRecord, host: str) -> None:
        run = await self._run_unless_reverting(rec, host)
        if run is None or run.state is not HostState.ROLLING_BACK:
            return
        await self._pass(rec, host, ROLLBACK_FLOW, back=True)

    async def settle(self, rec: ReleaseRecord, hosts: Collection[str] | None = None, *, again: bool = False) -> None:
        """Hosts a crash caught mid-pass (all, or those of ``hosts``): a forward pass is reverted, a revert or
        rollback is finished. With ``again`` a forward pass reverted cleanly is queued again (pending)."""
        for run in self.store.host_runs(rec.id):
            if hosts is not None and run.host not in hosts:
                continue
            if run.state is HostState.RUNNING:
                begun = [Step(s) for s in run.done_steps] + ([Step(run.step)] if run.step else [])
                await self.revert(rec, run, begun, "interrupted, then stopped", back=False)
                if again and self.store.host_run(rec.id, run.host).state is HostState.FAILED:
                    self.store.reset_host_run(rec.id, run.host, target_version=rec.version, state=HostState.PENDING)
                    self.store.journal(rec.id, run.host, "settle", "queued_again", {"reverted_to": run.found and
                                                                                   run.found.version})
            elif run.state is HostState.REVERTING:
                await self.resume_revert(rec, run)
            elif run.state is HostState.ROLLING_BACK and (run.done_steps or run.step):
                await self.roll_back(rec, run.host)


async def _never() -> Package:
    raise GrayliftError("no package is needed to unmute")


def _failure_detail(exc: BaseException) -> dict[str, Any]:
    detail: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, BackendsFailed):
        detail["backends"] = exc.failed
        detail["ok"] = exc.ok
    if isinstance(exc, TransportError):
        detail["host_error"] = True
    return detail
