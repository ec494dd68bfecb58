"""Releases: plan (with the preflight), start, roll back, and every request a person or pipeline makes.

Every state change goes through :mod:`graylift.core.state` (``decide_request``, the store's ``transition``),
never a direct write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from graylift.core.bluegreen import BlueGreen, make_blue_green_plan, serving_group
from graylift.core.model import Host, OnUnhealthy, Strategy, StrategyKind
from graylift.core.plan import Plan, Timing, make_plan
from graylift.core.policy import lease_is_stale, too_many_versions
from graylift.core.state import Direction, HostState, ReleaseKind, ReleaseState, Request, decide_request
from graylift.core.windows import Window, is_open
from graylift.engine.lease import STALE_AFTER_SECONDS, owner_is_dead
from graylift.errors import ConfigError, PreflightFailed, ReleaseNotFound, StateError
from graylift.preflight import Report, preflight
from graylift.service import gates, migrations
from graylift.service.base import ServiceBase
from graylift.store import DeployedVersion, HostHealth, HostRunRecord, JournalEntry, ReleaseRecord

if TYPE_CHECKING:
    from graylift.config import AppConfig


@dataclass
class PlanView:
    app: str
    env: str
    version: str | None
    plan: Plan
    hosts: list[Host]
    previous_version: str | None = None
    report: Report = field(default_factory=Report)
    attention: dict[str, HostHealth] = field(default_factory=dict)


class ReleaseService(ServiceBase):
    # --- planning --------------------------------------------------------------------------------

    async def plan(self, app: str, env: str, version: str | None = None, *, kind: ReleaseKind = ReleaseKind.RELEASE,
                   check: bool = True) -> PlanView:
        """The batches of a release of ``version``, and (``check``) the read-only preflight of every host and
        backend; hosts found installed but unhealthy are skipped (or refuse the release, by
        ``strategy.on_unhealthy``) and count against the 50% cap. Touches no host."""
        from graylift.wiring import inventory_for

        cfg, snap = self.settings(app, env, for_rollback=kind is ReleaseKind.ROLLBACK)
        hosts = await inventory_for(cfg, self.store).hosts(app, env)  # read once; the release snapshots them
        strategy = cfg.strategy_model()
        attention = self.store.host_health(app, env)
        report = Report()
        if check:
            fleet = self._fleet(snap, app, env, hosts)
            try:
                report = await preflight(fleet, [h for h in hosts if h.in_service],
                                         version=version if kind is ReleaseKind.RELEASE else None, clock=self.clock)
            finally:
                await fleet.close()
        unhealthy = report.unhealthy()
        known_out = {h: a.reason for h, a in attention.items()}
        if kind is ReleaseKind.ROLLBACK:  # a sick host is rolled back too (that may heal it), counted as out
            known_out |= unhealthy
            unhealthy = {}
        timing = Timing(host_seconds=cfg.quiet_period + 2 * cfg.commands.timeout / 6 + 5,
                        bake_seconds=strategy.bake_seconds, pause_seconds=strategy.pause_seconds)
        bg_plan = self._blue_green_plan(app, env, hosts, strategy, timing) \
            if strategy.kind is StrategyKind.BLUE_GREEN else None
        if bg_plan is not None:  # an idle host is restarted anyway (and must be healthy after); live ones serve
            unhealthy = {}
        if kind is ReleaseKind.RELEASE and version is not None:
            serving = report.versions_serving(BlueGreen.of(bg_plan).live_names if bg_plan else None)
            if (three := too_many_versions(serving, version)) is not None:
                report.problems.append(three)
            if cfg.compatibility:
                report.notes.append(f"compatibility: {cfg.compatibility}")
        if unhealthy and strategy.on_unhealthy is OnUnhealthy.FAIL:
            report.problems += [f"{name}: unhealthy before the release ({why}); strategy.on_unhealthy is fail"
                                for name, why in unhealthy.items()]
        if bg_plan is not None:
            plan = bg_plan
        else:
            plan = make_plan(hosts, strategy, timing=timing, attention=known_out, unhealthy=unhealthy,
                             canary=kind is ReleaseKind.RELEASE)
        previous = self.store.current_version(app, env) or report.fleet_version()  # a fleet another tool installed
        return PlanView(app, env, version, plan, hosts, previous, report=report, attention=attention)

    def _blue_green_plan(self, app: str, env: str, hosts: list[Host], strategy: Strategy, timing: Timing) -> Plan:
        """The idle group is the one not serving, as the newest blue-green release of app/env left it."""
        return make_blue_green_plan(hosts, strategy, serving=self.serving_group(app, env, strategy), timing=timing)

    def serving_group(self, app: str, env: str, strategy: Strategy) -> str:
        """The blue-green group in traffic, as the newest switch of app/env recorded it."""
        return serving_group((r.plan for r in self.store.list_releases(app, env, limit=100)),
                             strategy.blue_green_groups)

    def settings(self, app: str, env: str, *, for_rollback: bool = False) -> tuple[AppConfig, dict[str, Any]]:
        """The app's config for ``env`` and the snapshot a release keeps of it, from the config file.

        A rollback is an emergency command: when the config does not load (a typo in another app, a YAML
        error, no file), it works from the config snapshot of the app's last release in the state database,
        and ``config_problem`` says so.
        """
        from graylift.wiring import app_config, snapshot

        try:
            return self.config.app_for_env(app, env), snapshot(self.config, app, env)
        except ConfigError as exc:
            last = self.store.list_releases(app, env, limit=1) if for_rollback else []
            if not last or not last[0].config:
                raise
            self.config_problem = str(exc)
            return app_config(last[0].config), last[0].config

    def windows(self, app: str, env: str) -> list[Window]:
        return [w.window() for w in self.config.app_for_env(app, env).strategy.windows]

    def check_window(self, app: str, env: str, at: datetime, *, version: str, override: str | None = None,
                     scheduling: bool = False) -> None:
        gates.check_window(self.windows(app, env), app, env, at, version=version, override=override,
                           scheduling=scheduling)

    async def start_release(self, app: str, env: str, version: str, *, started_by: str,
                            outside_window: str | None = None, migration: str | None = None) -> ReleaseRecord:
        """Gates (:mod:`.gates`), preflight, and record a release (a worker drives it). Outside the app's release
        windows it is refused unless ``outside_window`` gives the reason, which is journaled. The app's schema
        migration (``migration``: expand or contract, else the config's default) runs before any host is touched
        (:mod:`.migrations`)."""
        now = self.store.db_now()
        cfg = self.config.app_for_env(app, env)
        windows = [w.window() for w in cfg.strategy.windows]
        gates.check_window(windows, app, env, now, version=version, override=outside_window)
        gates.check_promotion(self.store, cfg, app, env, version, now)
        migration_kind = migrations.declared_kind(cfg, migration)
        view = await self.plan(app, env, version)
        if view.report.problems:
            raise PreflightFailed(view.report.problems)
        snap = self.settings(app, env)[1]
        plan = view.plan.to_dict()
        if view.report.package is not None:
            plan["packages"] = {version: view.report.package.to_json()}
        rec = self._create(view, snap, plan, kind=ReleaseKind.RELEASE, version=version, started_by=started_by)
        if self.store.current_version(app, env) is None and view.previous_version:  # brownfield: what it ran
            self.store.record_deployed(app, env, view.previous_version, rec.id, source="survey")
            self.store.journal(rec.id, None, "survey", "fleet_version", {"version": view.previous_version})
        if outside_window and not is_open(windows, now):  # the override was what let it start
            self.store.journal(rec.id, None, "window", "override", {"reason": outside_window, "by": started_by})
        if migration_kind is not None:
            await migrations.run_migration(self.store, cfg, rec, migration_kind)
        return rec

    async def promote_env(self, app: str, version: str, *, from_env: str, to_env: str, started_by: str
                          ) -> ReleaseRecord:
        """Release ``version`` to ``to_env`` only if it passed ``from_env`` (and ``to_env``'s own gate)."""
        gates.check_promotion(self.store, self.config.app_for_env(app, to_env), app, to_env, version,
                              self.store.db_now(), after=from_env)
        return await self.start_release(app, to_env, version, started_by=started_by)

    def _create(self, view: PlanView, snap: dict[str, object], plan: dict[str, object], *, kind: ReleaseKind,
                version: str, started_by: str) -> ReleaseRecord:
        by_name = {h.name: h for h in view.hosts}
        runs: list[tuple[Host, int, str | None]] = [(by_name[name], view.plan.batch_of(name), None)
                                                     for name in view.plan.hosts]
        rec = self.store.create_release(app=view.app, env=view.env, kind=kind.value, version=version,
                                        previous_version=view.previous_version, plan=plan, config=snap,
                                        started_by=started_by, host_runs=runs)
        self.store.journal(rec.id, None, "preflight", "done",
                           {"notes": view.report.notes, "hosts": len(view.report.hosts)})
        if self._reads is not None:  # driven here next (sharing_connections): its pre-checks may use these
            reports = view.report.hosts
            self._reads[rec.id] = {name: read for name in view.plan.hosts
                                   if name in reports and (read := reports[name].read()) is not None}
        return rec

    async def start_rollback(self, app: str, env: str, *, to_version: str | None, started_by: str,
                             override_migration: str | None = None) -> ReleaseRecord:
        """Roll back the active release of app/env, or start a rollback release to the last good version.
        Across a contract migration only with ``override_migration`` (the reason, journaled)."""
        active = self.store.active_release(app, env)
        if active is not None:
            if to_version is not None and to_version != active.previous_version:
                raise StateError(f"release #{active.id} is active; it rolls back to {active.previous_version}, "
                                 f"not {to_version}. Roll it back first, then release {to_version}.")
            if active.previous_version is not None:
                crossed = migrations.check_rollback(self.store, app, env, active.previous_version, override_migration)
                self._journal_override(active.id, crossed, override_migration, started_by)
            return self.request(active.id, Request.ROLLBACK)
        current = self.store.current_version(app, env)
        bad = self.store.bad_versions(app, env)
        if to_version is not None and to_version in bad:
            raise StateError(f"{app} {to_version} ({env}) was rolled back before ({bad[to_version]}); "
                             "a rollback never goes to it: name another version with --to")
        target = to_version or self.previous_good_version(app, env, current)
        crossed = migrations.check_rollback(self.store, app, env, target, override_migration)
        view = await self.plan(app, env, target, kind=ReleaseKind.ROLLBACK)
        if view.report.problems:
            raise PreflightFailed(view.report.problems)
        view.previous_version = current or view.previous_version
        rec = self._create(view, self.settings(app, env, for_rollback=True)[1], view.plan.to_dict(),
                           kind=ReleaseKind.ROLLBACK, version=target, started_by=started_by)
        self._journal_override(rec.id, crossed, override_migration, started_by)
        return rec

    def _journal_override(self, release_id: int, crossed: list[ReleaseRecord], reason: str | None, by: str) -> None:
        if crossed and reason:
            self.store.journal(release_id, None, "migration", "override",
                               {"reason": reason, "by": by, "crossed": [r.id for r in crossed]})

    def previous_good_version(self, app: str, env: str, current: str | None) -> str:
        """The newest version that went live before ``current`` and was never rolled back."""
        bad = self.store.bad_versions(app, env)
        for deployed in self.store.deployed_versions(app, env):
            if deployed.version != current and deployed.version not in bad:
                return deployed.version
        raise StateError(f"no earlier good version of {app} ({env}) is recorded; name one with "
                         f"`graylift rollback {app} --env {env} --to VERSION`")

    # --- control -----------------------------------------------------------------------------------

    def release(self, release_id: int) -> ReleaseRecord:
        return self.store.get_release(release_id)

    def request(self, release_id: int, action: str | Request) -> ReleaseRecord:
        """promote, pause, abort, rollback: queued for the driver, or (a paused release) applied at once."""
        rec = self.store.get_release(release_id)
        request = Request(action)
        outcome = decide_request(request, state=rec.state, direction=rec.direction, kind=rec.kind,
                                 release_id=rec.id)
        if outcome.move_to is not None:
            message = "rolling back on request" if outcome.move_to is ReleaseState.ROLLING_BACK else None
            return self.store.transition(rec.id, outcome.move_to, message, expect=rec.state)
        self.store.request(rec.id, request.value)
        return self.store.get_release(rec.id)

    def resume(self, release_id: int) -> ReleaseRecord:
        """A paused release goes on in its own direction; a crashed one is taken over as it is."""
        rec = self.store.get_release(release_id)
        if rec.state.finished:
            raise StateError(f"release #{rec.id} already {rec.state.value}; nothing to resume")
        if rec.state is not ReleaseState.PAUSED:
            return rec  # running without a controller (it died): a new worker takes it over
        decide_request(Request.RESUME, state=rec.state, direction=rec.direction, kind=rec.kind, release_id=rec.id)
        if rec.direction is Direction.BACK:
            return self._requeue_back_pass(rec, "resumed: rolling back")
        self.store.clear_request(rec.id)
        return self.store.transition(rec.id, ReleaseState.RUNNING, "resumed", expect=rec.state)

    def retry(self, release_id: int) -> ReleaseRecord:
        """Queue the failed hosts of a paused release again, in its direction: a forward release retries the
        new version on failed and skipped hosts; a rollback retries going back on the hosts it left stuck."""
        rec = self.store.get_release(release_id)
        decide_request(Request.RETRY, state=rec.state, direction=rec.direction, kind=rec.kind, release_id=rec.id)
        if rec.direction is Direction.BACK:
            return self._requeue_back_pass(rec, "retrying the rollback")
        retried = [r for r in self.store.host_runs(rec.id)
                   if r.state in (HostState.FAILED, HostState.NEEDS_ATTENTION, HostState.SKIPPED)]
        if not retried:
            raise StateError(f"release #{rec.id} has no failed host to retry; `graylift resume {rec.id}`")
        for run in retried:
            self.store.reset_host_run(rec.id, run.host, target_version=rec.version, state=HostState.PENDING)
        self.store.clear_request(rec.id)
        # back to the earliest retried host's batch, never forward: a canary baseline left needing attention
        # belongs to a later batch, and its retry restarts it within the canary phase, then bakes again
        self.store.update_release(rec.id, cursor=min(rec.cursor, *(r.batch for r in retried)), wait_until=None)
        return self.store.transition(rec.id, ReleaseState.RUNNING, f"retrying {len(retried)} host(s)",
                                     expect=ReleaseState.PAUSED)

    def _requeue_back_pass(self, rec: ReleaseRecord, message: str) -> ReleaseRecord:
        back_pass = rec.plan.get("back_pass") or {}
        for run in self.store.host_runs(rec.id):
            goal = back_pass.get(run.host) if isinstance(back_pass, dict) else None
            if goal and run.state in (HostState.NEEDS_ATTENTION, HostState.FAILED):
                self.store.reset_host_run(rec.id, run.host, target_version=goal["version"], target_dir=goal["dir"],
                                          state=HostState.ROLLING_BACK)
        self.store.clear_request(rec.id)
        return self.store.transition(rec.id, ReleaseState.ROLLING_BACK, message, expect=ReleaseState.PAUSED)

    def runnable_releases(self) -> list[ReleaseRecord]:
        return [r for r in self.store.active_releases() if r.state.needs_worker]

    def controller_gone(self, rec: ReleaseRecord) -> bool:
        """A release that needs a controller and has none: never claimed, its process died, or its heartbeat
        is older than the stale window by the database's clock."""
        if not rec.state.needs_worker or rec.finished:
            return False
        if rec.owner is None or owner_is_dead(rec.owner):
            return True
        return lease_is_stale(now=self.store.db_now(), heartbeat_at=rec.heartbeat_at or rec.updated_at,
                              stale_after=STALE_AFTER_SECONDS)

    def orphaned_releases(self) -> list[ReleaseRecord]:
        return [r for r in self.runnable_releases() if self.controller_gone(r)]

    def find(self, ref: str, env: str | None) -> ReleaseRecord:
        """A release by id, or the active (else latest) release of an app in an env."""
        if ref.isdigit():
            return self.store.get_release(int(ref))
        if env is None:
            raise StateError(f"give --env to find the release of {ref}")
        active = self.store.active_release(ref, env)
        if active is not None:
            return active
        found = self.store.list_releases(ref, env, limit=1)
        if not found:
            raise ReleaseNotFound(f"no release of {ref} in {env} yet")
        return found[0]

    # --- reads -----------------------------------------------------------------------------------

    def active_releases(self) -> list[ReleaseRecord]:
        return self.store.active_releases()

    def list_releases(self, app: str, env: str, limit: int = 50) -> list[ReleaseRecord]:
        return self.store.list_releases(app, env, limit=limit)

    def host_runs(self, release_id: int) -> list[HostRunRecord]:
        return self.store.host_runs(release_id)

    def journal(self, release_id: int, since_id: int = 0, *, steps: tuple[str, ...] | None = None,
                event: str | None = None) -> list[JournalEntry]:
        return self.store.journal_entries(release_id, since_id=since_id, steps=steps, event=event)

    def current_version(self, app: str, env: str) -> str | None:
        return self.store.current_version(app, env)

    def deployed_versions(self, app: str, env: str) -> list[DeployedVersion]:
        return self.store.deployed_versions(app, env)

    def needs_hand_off(self, rec: ReleaseRecord) -> bool:
        """Nobody drives this release but it has something to do (a queued request, or it needs a worker)."""
        return self.controller_gone(rec) or (rec.state is ReleaseState.PAUSED and rec.requested is not None)
