"""Releases at the desk: reading them, planning, starting one or a rollback (or the request for it, where
approval is needed), the requests of a running release, and the hosts of the built-in CMDB."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graylift.auth.approvals import ApprovalDesk
from graylift.auth.base import Actor, InputError, check_name
from graylift.auth.roles import Action
from graylift.core.state import ReleaseKind, ReleaseState, Request
from graylift.errors import GrayliftError, StateError
from graylift.service import PlanView, ReleaseRecord
from graylift.store.accounts import Approval, Missing, ReleaseInfo, ReleaseRequest


@dataclass(frozen=True)
class Started:
    """The outcome of asking for a release: a release that started, or a request waiting for approval."""

    release: ReleaseRecord | None = None
    request: ReleaseRequest | None = None
    plan: PlanView | None = None


@dataclass(frozen=True)
class AppEnv:
    """One row of the overview: an app in an environment, its versions and what waits on a person."""

    app: str
    env: str
    current: str | None
    previous: str | None
    active: ReleaseRecord | None
    waiting: list[ReleaseRequest] = field(default_factory=list)

    @property
    def needs_person(self) -> str | None:
        if self.waiting:
            return f"{len(self.waiting)} waiting for approval"
        if self.active is not None and self.active.state is ReleaseState.AWAITING_PROMOTION:
            return "canary waiting for promotion"
        if self.active is not None and self.active.state is ReleaseState.PAUSED:
            return "paused"
        return None


class ReleaseDesk(ApprovalDesk):
    """Releases and hosts; a release that needs approval goes through :class:`ApprovalDesk` first."""

    # ------------------------------------------------------------------ reading
    def release(self, actor: Actor, release_id: int) -> ReleaseRecord:
        rec = self.gl.release(release_id)
        self.require(actor, Action.VIEW, rec.app, rec.env, f"release #{release_id}")
        return rec

    def releases(self, actor: Actor, *, app: str | None = None, env: str | None = None, state: str | None = None,
                 kind: str | None = None, before_id: int | None = None, limit: int = 50) -> list[ReleaseRecord]:
        return self.queries.releases(visible=self.visible(actor), app=app, env=env, state=state, kind=kind,
                                     before_id=before_id, limit=limit)

    def info(self, release_ids: list[int]) -> dict[int, ReleaseInfo]:
        return self.accounts.release_info(release_ids)

    def origin(self, release_id: int) -> tuple[ReleaseInfo | None, list[Approval]]:
        """How a release was asked for (through what, why, the ticket, the request, a freeze override) and, if
        it came from a request, the decisions on it."""
        info = self.info([release_id]).get(release_id)
        return info, self.accounts.approvals(info.request_id) if info and info.request_id else []

    def overview(self, actor: Actor) -> list[AppEnv]:
        from graylift.service.catalog import configured_app_envs

        pairs = set(self.queries.app_envs())
        for app, envs in configured_app_envs(self.gl).items():
            pairs |= {(app, env) for env in envs}
        active = {(r.app, r.env): r for r in self.gl.active_releases()}
        waiting: dict[tuple[str, str], list[ReleaseRequest]] = {}
        for req in self.accounts.requests(state="waiting", limit=500):
            waiting.setdefault((req.app, req.env), []).append(req)
        rows = []
        for app, env in sorted(pairs):
            if not self.can(actor, Action.VIEW, app, env):
                continue
            current, previous = self.versions(app, env)
            rows.append(AppEnv(app, env, current, previous, active.get((app, env)), waiting.get((app, env), [])))
        return rows

    def versions(self, app: str, env: str) -> tuple[str | None, str | None]:
        """(current, previous): the version live now and the one live before it."""
        deployed = [d.version for d in self.gl.deployed_versions(app, env)]
        current = deployed[0] if deployed else None
        previous = next((v for v in deployed[1:] if v != current), None)
        return current, previous

    # ------------------------------------------------------------------ planning and starting
    async def plan(self, actor: Actor, app: str, env: str, version: str | None) -> PlanView:
        self.require(actor, Action.PLAN, app, env)
        return await self.gl.plan(app, env, version)

    def plan_warnings(self, actor: Actor, app: str) -> list[str]:
        """What a plan of ``app`` warns of: its other releases running or waiting, in any environment."""
        found = [f"release #{r.id} of {r.app} {r.version} ({r.env}) is {r.state.value}"
                 for r in self.gl.active_releases() if r.app == app]
        found += [f"request #{q.id} for {q.app} {q.version or '(last good)'} ({q.env}) is waiting for approval"
                  for q in self.requests(actor, state="waiting", app=app)]
        return found

    async def survey(self, actor: Actor, app: str, env: str, version: str | None) -> Any:
        self.require(actor, Action.SURVEY, app, env)
        return await self.gl.survey(app, env, version)

    async def start_release(self, actor: Actor, app: str, env: str, version: str, *, reason: str = "",
                            ticket: str = "", override: str | None = None) -> Started:
        """Start a release now, or (where the environment needs approval) record a request for it."""
        self.require(actor, Action.START, app, env)
        check_name(version, "version", 128)
        target = f"{app} {version} ({env})"
        detail = {"version": version, "reason": reason, "ticket": ticket}
        try:
            self.gl.config.app_for_env(app, env)
            self._check_freeze(actor, app, env, override, target)
            needed = self.approvals_needed(app, env, ReleaseKind.RELEASE.value)
            if needed:
                view = await self.gl.plan(app, env, version)
                if view.report.problems:
                    from graylift.errors import PreflightFailed

                    raise PreflightFailed(view.report.problems)
                req = self._new_request(actor, app, env, ReleaseKind.RELEASE.value, version, reason, ticket, needed)
                return Started(request=req, plan=view)
            rec = await self.gl.start_release(app, env, version, started_by=actor.name)
        except GrayliftError as exc:
            self._audit(actor, "release", target, "refused", app, env, detail | {"error": str(exc)})
            raise
        self.accounts.add_release_info(rec.id, trigger=actor.trigger, reason=reason, ticket=ticket, override=override)
        self._audit(actor, "release", f"release #{rec.id}", "ok", app, env, detail | {"override": override or ""})
        return Started(release=rec)

    async def start_rollback(self, actor: Actor, app: str, env: str, to_version: str | None, *,
                             reason: str = "", ticket: str = "") -> Started:
        """Roll back the active release of app/env, or start a rollback release to the last good version (or
        ``to_version``, which must have gone live there before: anything else is a release, with its rules)."""
        self.require(actor, Action.ROLLBACK, app, env)
        target = f"{app} ({env})"
        detail = {"to": to_version or "", "reason": reason, "ticket": ticket}
        try:
            if to_version is not None:
                check_name(to_version, "version", 128)
                if to_version not in {d.version for d in self.gl.deployed_versions(app, env)}:
                    raise StateError(f"{app} {to_version} never went live in {env}; a rollback only goes to a "
                                     "version that did. Release it instead (the approval rules apply)")
            self.gl.config.app_for_env(app, env)
            needed = self.approvals_needed(app, env, ReleaseKind.ROLLBACK.value)
            if needed and self.gl.store.active_release(app, env) is None:
                req = self._new_request(actor, app, env, ReleaseKind.ROLLBACK.value, to_version, reason, ticket,
                                        needed)
                return Started(request=req)
            rec = await self.gl.start_rollback(app, env, to_version=to_version, started_by=actor.name)
        except GrayliftError as exc:
            self._audit(actor, "rollback", target, "refused", app, env, detail | {"error": str(exc)})
            raise
        if rec.kind is ReleaseKind.ROLLBACK and not self.accounts.release_info([rec.id]):
            self.accounts.add_release_info(rec.id, trigger=actor.trigger, reason=reason, ticket=ticket)
        self._audit(actor, "rollback", f"release #{rec.id}", "ok", app, env, detail)
        return Started(release=rec)

    # ------------------------------------------------------------------ controlling a release
    def control(self, actor: Actor, release_id: int, action: str, *, reason: str = "") -> ReleaseRecord:
        """promote, pause, resume, retry, abort, rollback of a release."""
        try:
            request = Request(action)
        except ValueError:
            raise InputError(f"unknown action {action!r}; one of {', '.join(r.value for r in Request)}") from None
        rec = self.gl.release(release_id)
        self.require(actor, Action(request.value), rec.app, rec.env, f"release #{release_id}")

        def work() -> ReleaseRecord:
            if request is Request.RESUME:
                return self.gl.resume(release_id)
            if request is Request.RETRY:
                return self.gl.retry(release_id)
            return self.gl.request(release_id, request)

        return self._audited(actor, action, f"release #{release_id}", rec.app, rec.env, work, {"reason": reason})

    # ------------------------------------------------------------------ hosts (the CMDB)
    def hosts(self, actor: Actor, app: str, env: str) -> list[Any]:
        self.require(actor, Action.VIEW, app, env)
        return self.gl.list_hosts(app, env)

    def import_hosts(self, actor: Actor, app: str, env: str, hosts: list[Any], *, dry_run: bool = False) -> Any:
        """The host list of app/env becomes ``hosts``; the HostListDiff (``dry_run``: nothing stored)."""
        self.require(actor, Action.HOSTS, app, env)
        names = [h.name for h in hosts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InputError(f"host(s) {', '.join(twice)} appear twice in the list for {app} ({env})")
        if dry_run:
            return self.gl.import_hosts(app, env, hosts, dry_run=True)
        return self._audited(actor, "hosts_import", f"{app} ({env})", app, env,
                             lambda: self.gl.import_hosts(app, env, hosts), {"hosts": len(hosts)})

    def _known_host(self, app: str, env: str, host: str) -> None:
        if host not in {h.name for h in self.gl.list_hosts(app, env)}:
            raise Missing(f"host {host} is not in the inventory of {app} ({env}); "
                          f"`graylift hosts list --app {app} --env {env}`")

    def maintenance(self, actor: Actor, app: str, env: str, host: str, in_service: bool) -> None:
        self.require(actor, Action.HOSTS, app, env)
        self._known_host(app, env, host)
        self._audited(actor, "hosts_maintenance", f"host {host}", app, env,
                      lambda: self.gl.set_maintenance(app, env, host, in_service=in_service),
                      {"in_service": in_service})

    def clear_host(self, actor: Actor, app: str, env: str, host: str) -> bool:
        self.require(actor, Action.HOSTS, app, env)
        return self._audited(actor, "hosts_clear", f"host {host}", app, env,
                             lambda: self.gl.clear_host(app, env, host))

    def host_timeline(self, actor: Actor, app: str, env: str, host: str) -> list[Any]:
        self.require(actor, Action.VIEW, app, env)
        return self.queries.host_timeline(app, env, host)

