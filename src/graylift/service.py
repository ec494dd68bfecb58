"""The application service: what the CLI (and the HTTP API) call. No printing, no argument parsing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from graylift.config import GrayliftConfig, load_config
from graylift.core.model import Host
from graylift.core.plan import Plan, Timing, make_plan
from graylift.core.state import HostState, ReleaseState, check_transition
from graylift.engine import Engine
from graylift.errors import ReleaseNotFound, StateError
from graylift.store import ReleaseRecord, Store
from graylift.wiring import app_config, artifact_store, inventory_for, open_fleet, package_to_json, snapshot

DEFAULT_CONFIG = Path("graylift.yaml")


def config_path_from_env(path: Path | None) -> Path:
    if path is not None:
        return path
    return Path(os.environ.get("GRAYLIFT_CONFIG", str(DEFAULT_CONFIG)))


@dataclass
class PlanView:
    app: str
    env: str
    version: str | None
    plan: Plan
    hosts: list[Host]


class Graylift:
    """One config file + one state database."""

    def __init__(self, config_path: Path | None = None, *, db_url: str | None = None) -> None:
        self.config_path = config_path_from_env(config_path)
        self._config: GrayliftConfig | None = None
        self._store: Store | None = None
        self._db_url = db_url

    @property
    def config(self) -> GrayliftConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            url = self._db_url or self.config.state_url(self.config_path)
            self._store = Store.open(url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def engine(self) -> Engine:
        store = self.store

        async def factory(rec: ReleaseRecord):  # type: ignore[no-untyped-def]
            return await open_fleet(store, rec)

        return Engine(store, factory)

    # --- planning --------------------------------------------------------------------------------

    async def plan(self, app: str, env: str, version: str | None = None) -> PlanView:
        cfg = self.config.app_for_env(app, env)
        hosts = await inventory_for(cfg, self.store).hosts(app, env)  # read once; the release snapshots them
        strategy = cfg.strategy_model()
        timing = Timing(
            host_seconds=cfg.quiet_period + 2 * cfg.commands.timeout / 6 + 5,
            bake_seconds=strategy.bake_seconds,
            pause_seconds=strategy.pause_seconds,
        )
        plan = make_plan(hosts, strategy, timing=timing)
        return PlanView(app, env, version, plan, hosts)

    async def start_release(self, app: str, env: str, version: str, *, started_by: str) -> ReleaseRecord:
        view = await self.plan(app, env, version)
        snap = snapshot(self.config, app, env)
        package = await artifact_store(app_config(snap)).resolve(app, version)
        plan = view.plan.to_dict() | {"packages": {version: package_to_json(package)}}
        by_name = {h.name: h for h in view.hosts}
        runs: list[tuple[Host, int, str | None]] = [
            (by_name[name], view.plan.batch_of(name), None) for name in view.plan.hosts
        ]
        return self.store.create_release(
            app=app, env=env, kind="release", version=version,
            previous_version=self.store.current_version(app, env),
            plan=plan, config=snap, started_by=started_by, host_runs=runs,
        )

    async def start_rollback(self, app: str, env: str, *, to_version: str | None, started_by: str
                             ) -> ReleaseRecord:
        """Roll back the active release of app/env, or start a rollback release to the previous version."""
        active = self.store.active_release(app, env)
        if active is not None:
            if to_version is not None and to_version != active.previous_version:
                raise StateError(
                    f"release #{active.id} is active; it rolls back to {active.previous_version}, "
                    f"not {to_version}. Roll it back first, then release {to_version}."
                )
            check_transition(ReleaseState(active.state), ReleaseState.ROLLING_BACK)
            if ReleaseState(active.state) is ReleaseState.PAUSED:  # no worker is running: move it here
                self.store.journal(active.id, None, "release", "rolling_back", {"message": "rollback requested"})
                self.store.update_release(active.id, state=ReleaseState.ROLLING_BACK.value,
                                          message="rolling back on request")
            else:
                self.store.request(active.id, "rollback")
            return self.store.get_release(active.id)
        current = self.store.current_version(app, env)
        target = to_version or self._previous_version(app, env, current)
        snap = snapshot(self.config, app, env)
        package = await artifact_store(app_config(snap)).resolve(app, target)
        app_cfg = self.config.app_for_env(app, env)
        hosts = await inventory_for(app_cfg, self.store).hosts(app, env)
        strategy = app_cfg.strategy_model()
        plan_obj = make_plan(hosts, strategy, canary=False)
        plan = plan_obj.to_dict() | {"packages": {target: package_to_json(package)}}
        by_name = {h.name: h for h in hosts}
        runs: list[tuple[Host, int, str | None]] = [
            (by_name[name], plan_obj.batch_of(name), current) for name in plan_obj.hosts
        ]
        return self.store.create_release(
            app=app, env=env, kind="rollback", version=target, previous_version=current,
            plan=plan, config=snap, started_by=started_by, host_runs=runs,
        )

    def _previous_version(self, app: str, env: str, current: str | None) -> str:
        for deployed in self.store.deployed_versions(app, env):
            if deployed.version != current:
                return deployed.version
        raise StateError(
            f"no previous version of {app} ({env}) is recorded; name one with `graylift rollback {app} "
            f"--env {env} --to VERSION`"
        )

    # --- control -----------------------------------------------------------------------------------

    def release(self, release_id: int) -> ReleaseRecord:
        return self.store.get_release(release_id)

    def request(self, release_id: int, action: str) -> ReleaseRecord:
        rec = self.store.get_release(release_id)
        state = ReleaseState(rec.state)
        if state.finished:
            raise StateError(f"release #{rec.id} already {state.value}")
        if action == "promote" and state not in (ReleaseState.BAKING, ReleaseState.AWAITING_PROMOTION):
            raise StateError(f"release #{rec.id} is {state.value}: only a baking canary can be promoted")
        if action == "abort" and state is ReleaseState.PAUSED:
            self.store.request(rec.id, "abort")
            self.store.update_release(rec.id, state=ReleaseState.RUNNING.value)  # the worker settles it
            return self.store.get_release(rec.id)
        self.store.request(rec.id, action)
        return self.store.get_release(rec.id)

    def resume_target(self, release_id: int) -> ReleaseRecord:
        """Make a paused release runnable again (a crashed one is runnable as it is)."""
        rec = self.store.get_release(release_id)
        state = ReleaseState(rec.state)
        if state.finished:
            raise StateError(f"release #{rec.id} already {state.value}; nothing to resume")
        if state is ReleaseState.PAUSED:
            self.store.clear_request(rec.id)
            rec = self.store.update_release(rec.id, state=ReleaseState.RUNNING.value,
                                            message="resumed")
        return rec

    def retry(self, release_id: int) -> ReleaseRecord:
        """Put failed and skipped hosts back in the queue and resume from the first batch holding one."""
        rec = self.store.get_release(release_id)
        state = ReleaseState(rec.state)
        if state is not ReleaseState.PAUSED:
            raise StateError(f"release #{rec.id} is {state.value}; retry works on a paused release")
        retried = [r for r in self.store.host_runs(rec.id)
                   if r.state in (HostState.FAILED, HostState.NEEDS_ATTENTION, HostState.SKIPPED)]
        if not retried:
            raise StateError(f"release #{rec.id} has no failed host to retry; `graylift resume {rec.id}`")
        for run in retried:
            self.store.reset_host_run(rec.id, run.host, target_version=rec.version, state=HostState.PENDING.value)
        cursor = min(r.batch for r in retried)
        self.store.clear_request(rec.id)
        return self.store.update_release(rec.id, state=ReleaseState.RUNNING.value, cursor=cursor,
                                         message=f"retrying {len(retried)} host(s)", wait_until=None)

    def runnable_releases(self) -> list[ReleaseRecord]:
        return [r for r in self.store.active_releases() if ReleaseState(r.state).needs_worker]

    def orphaned_releases(self) -> list[ReleaseRecord]:
        """Releases that need a controller and have none: its process died (or never started)."""
        from datetime import UTC, datetime

        from graylift.core.policy import lease_is_stale
        from graylift.engine import STALE_AFTER_SECONDS

        engine = self.engine()
        now = datetime.now(UTC)
        found = []
        for rec in self.runnable_releases():
            dead = rec.owner is not None and engine.owner_is_dead(rec)
            silent = lease_is_stale(now=now, heartbeat_at=rec.heartbeat_at or rec.updated_at,
                                    stale_after=STALE_AFTER_SECONDS)
            if dead or silent:
                found.append(rec)
        return found

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
