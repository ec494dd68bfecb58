"""`graylift doctor`: every host a release left drained, muted, stopped, mid-pass or on another version than its
record says, found from the journal and a read-only survey, and with ``repair`` put right through the engine's
own steps (:mod:`graylift.core.doctor` decides what is wrong and which steps fix it).

A host caught mid-pass by a dead controller is reverted by the engine itself (:meth:`Engine.settle`, under the
release's lease: a release a live controller drives is never touched), then queued again so that
`graylift resume` does it anew. A settled host is walked through the steps the core names (put back, unmute,
restart) on the release ``current`` points at.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from graylift.core.doctor import Diagnosis, Live, Record, Repair, diagnose
from graylift.core.flow import Step
from graylift.core.model import Host, Strategy, StrategyKind
from graylift.core.state import HostState
from graylift.errors import ConfigError, GrayliftError
from graylift.ports import Fleet, SystemClock
from graylift.service.releases import ReleaseService
from graylift.store import HostRunRecord, ReleaseRecord

if TYPE_CHECKING:  # imported where used: `graylift status` does not load the steps, the preflight, the adapters
    from graylift.preflight import HostReport

RELEASES_LOOKED_AT = 20
"""How far back the journal is read per app and environment (a silence lapses long before)."""

UNDOING = {HostState.REVERTING: "revert", HostState.ROLLING_BACK: "rollback"}


@dataclass(frozen=True)
class Finding:
    """One host doctor found something wrong with, and what ``--repair`` did about it."""

    app: str
    env: str
    diagnosis: Diagnosis
    release_id: int | None
    outcome: str = ""  # what the repair did, or why not ("" without --repair)
    repaired: bool = False

    @property
    def host(self) -> str:
        return self.diagnosis.host

    def to_json(self) -> dict[str, Any]:
        d = self.diagnosis
        return {"app": self.app, "env": self.env, "host": d.host, "release": self.release_id,
                "problems": list(d.problems), "evidence": list(d.evidence), "repair": d.repair.value,
                "steps": [s.value for s in d.steps], "advice": d.advice, "outcome": self.outcome,
                "repaired": self.repaired}


@dataclass(frozen=True)
class _Touched:
    """A host's run in the last release that touched it."""

    release: ReleaseRecord
    run: HostRunRecord


class DoctorService(ReleaseService):

    async def doctor(self, app: str | None, env: str | None, *, repair: bool) -> list[Finding]:
        """Every host of ``app`` (all apps with releases) in ``env`` (all) that is not as it should be."""
        pairs = {(r.app, r.env) for r in self.store.list_releases(app, env, limit=500)
                 if app is not None or r.app in self.config.apps}  # an app gone from the config is not surveyed
        if app is not None and env is not None:
            pairs.add((app, env))
        elif app is not None and not pairs:
            raise ConfigError(f"{app} has no release yet, so doctor does not know its environments: give --env ENV")
        findings: list[Finding] = []
        for one_app, one_env in sorted(pairs):
            findings += await self._doctor(one_app, one_env, repair=repair)
        return findings

    async def _doctor(self, app: str, env: str, *, repair: bool) -> list[Finding]:
        from graylift.preflight import survey_hosts
        from graylift.wiring import inventory_for, snapshot

        touched = self._touched(app, env)
        cfg = self.config.app_for_env(app, env)
        hosts = {h.name: h for h in await inventory_for(cfg, self.store).hosts(app, env)}
        for name, last in touched.items():
            hosts.setdefault(name, last.run.host_spec)
        fleet = self._fleet(snapshot(self.config, app, env), app, env, list(hosts.values()))
        try:
            reports = await survey_hosts(fleet, list(hosts.values()), with_health=True)
            lives = await asyncio.gather(*(self._live(fleet, reports[n], touched.get(n)) for n in hosts))
            attention = self.store.host_health(app, env)
            driver = self._driver(app, env)
            idle = self._idle_group(cfg.strategy_model(), app, env, list(hosts.values()))
            findings = []
            for name, live in zip(hosts, lives, strict=True):
                if name in idle:  # out of traffic on purpose
                    live = replace(live, out_of=())
                mark = attention.get(name)
                record = replace(self._record(touched.get(name), mark.reason if mark else None), driven_by=driver)
                diagnosis = diagnose(name, record, live, app=app, env=env)
                if diagnosis.wrong:
                    findings.append(Finding(app, env, diagnosis, record.release_id))
            if repair:
                findings = [await self._repair(fleet, reports, f) for f in findings]
        finally:
            await fleet.close()
        return findings

    def _idle_group(self, strategy: Strategy, app: str, env: str, hosts: list[Host]) -> set[str]:
        """A blue-green app's idle group: out of traffic between releases, which is no fault."""
        if strategy.kind is not StrategyKind.BLUE_GREEN:
            return set()
        serving = self.serving_group(app, env, strategy)
        return {h.name for h in hosts if h.group in strategy.blue_green_groups and h.group != serving}

    # --- what the store says -----------------------------------------------------------------

    def _touched(self, app: str, env: str) -> dict[str, _Touched]:
        """Each host's run in the newest release that got past pending on it."""
        touched: dict[str, _Touched] = {}
        for rec in self.store.list_releases(app, env, limit=RELEASES_LOOKED_AT):
            for run in self.store.host_runs(rec.id):
                if run.host not in touched and (run.state is not HostState.PENDING or run.step):
                    touched[run.host] = _Touched(rec, run)
        return touched

    def _driver(self, app: str, env: str) -> str | None:
        """The app/env's release a live controller drives (its lease fresh), as ``release #N (owner)``."""
        active = self.store.active_release(app, env)
        if active is None or not active.state.needs_worker or self.controller_gone(active):
            return None
        return f"release #{active.id} ({active.owner})"

    def _record(self, last: _Touched | None, attention: str | None) -> Record:
        if last is None:
            return Record(attention=attention)
        rec, run = last.release, last.run
        mid_pass = run.state.in_flight and not rec.finished and bool(run.done_steps or run.step)
        begun = tuple(Step(s) for s in run.done_steps) + ((Step(run.step),) if run.step else ())
        version: str | None = None
        if run.state in (HostState.DONE, HostState.ROLLED_BACK):
            version = run.target_version
        elif run.state in (HostState.FAILED, HostState.SKIPPED) and run.found is not None:
            version = run.found.version
        return Record(release_id=rec.id, begun=begun if mid_pass else (),
                      stopped_at=Step(run.step) if run.step else (begun[-1] if begun else None),
                      has_previous=run.found is not None and not run.found.fresh, version=version,
                      attention=attention,
                      undoing=UNDOING.get(run.state, ""))

    # --- what the host and its backends say --------------------------------------------------

    async def _live(self, fleet: Fleet, report: HostReport, last: _Touched | None) -> Live:
        from graylift.runtime import silence_reason

        if report.problem is not None or report.found is None:
            return Live(unreadable=report.problem or "not surveyed")
        host, found = report.host, report.found
        healthy = report.healthy
        live = Live(serving=healthy is None or healthy.ok, health=healthy.detail if healthy else "",
                    version=found.version, fresh=found.fresh)
        try:
            out = tuple([s.name for s in fleet.runtime.switches if await s.is_out(host)])
            muted: tuple[str, ...] = ()
            if last is not None:
                reason = silence_reason(last.release.id, last.release.app, last.release.env)
                ids = self._silence_ids(last)
                muted = tuple([f"{s.name} (silence {ids[s.name][:8]}…)" if s.name in ids else s.name
                               for s in fleet.runtime.silencers if await s.is_muted(host, reason=reason)])
        except GrayliftError as exc:
            return Live(unreadable=f"a backend could not be read: {exc}")
        return replace(live, out_of=out, muted_by=muted)

    def _silence_ids(self, last: _Touched) -> dict[str, str]:
        for entry in reversed(self.store.journal_entries(last.release.id, last.run.host)):
            if entry.step == Step.MUTE.value and entry.event == "done":
                return {str(k): str(v) for k, v in (entry.detail.get("silences") or {}).items()}
        return {}

    # --- putting it right --------------------------------------------------------------------

    async def _repair(self, fleet: Fleet, reports: dict[str, HostReport], finding: Finding) -> Finding:
        d = finding.diagnosis
        if d.repair is Repair.REFUSED:
            return replace(finding, outcome=f"not repaired: {d.advice}")
        try:
            if d.repair is Repair.REVERT:
                assert finding.release_id is not None
                outcome = await self._revert(finding.release_id, d.host)
            elif d.repair is Repair.STEPS:
                outcome = await self._steps(fleet, reports[d.host], finding)
            else:
                outcome = "nothing else was wrong"
        except GrayliftError as exc:
            return replace(finding, outcome=f"not repaired: {exc}")
        self.store.clear_host_health(finding.app, finding.env, d.host)
        return replace(finding, outcome=outcome, repaired=True)

    async def _revert(self, release_id: int, host: str) -> str:
        """The engine reverts the host's unfinished pass under the release's lease, and queues it again."""
        await self.engine().settle(release_id, {host}, again=True)
        run = self.store.host_run(release_id, host)
        if run.state is HostState.PENDING:
            return (f"reverted to {run.found.version if run.found else 'its previous version'} (in traffic, "
                    f"unmuted); `graylift resume {release_id}` does it again")
        if run.state in (HostState.NEEDS_ATTENTION,):
            raise GrayliftError(f"the engine's undo left it needing attention: {run.error}")
        return f"settled by the engine: {run.state.value}"

    async def _steps(self, fleet: Fleet, report: HostReport, finding: Finding) -> str:
        """Walk the host, on the release ``current`` points at, through the steps the core named."""
        from graylift.runtime import StepContext, Target, no_package
        from graylift.steps import run_step

        found = report.found
        assert found is not None and found.current_dir is not None
        target = Target(found.version or found.current_dir, found.current_dir, None, no_package)
        transport = await fleet.connect(report.host)
        ctx = StepContext.open(fleet.runtime, report.host, transport, target, finding.release_id or 0,
                               self.clock or SystemClock(), found=found)
        for step in finding.diagnosis.steps:
            try:
                await run_step(step, ctx)
            except (GrayliftError, OSError) as exc:
                raise GrayliftError(f"{step.value} failed: {exc}") from exc
        return "ran " + ", ".join(s.value for s in finding.diagnosis.steps)


__all__ = ["DoctorService", "Finding"]
