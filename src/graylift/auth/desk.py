"""The desk: every action a person or a pipeline takes through the server, in one place.

Each method checks the actor's role on the app x environment (:mod:`graylift.auth.roles`), the freeze windows
and the approval rule (:mod:`graylift.auth.rules`), does the work through the service, and appends one audit
entry with who, what, when, from where and the outcome (denials and refusals too). The HTTP API, the console
and the CLI through the server all call it, so the same rules hold everywhere.

Approvals cannot be bypassed: where an environment needs them, a release is first an immutable *request*;
the release is created from the request's own fields only when enough people other than the requester
approved it. Resume and retry continue that same release; any new release (or a rollback to a version that
never went live there) is a new request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from graylift.auth import secrets
from graylift.auth.roles import ANY, Action, Denied, Grant, Role, Unauthenticated, check, may, parse_role
from graylift.auth.rules import active_freeze, approvals_needed
from graylift.core.state import ReleaseKind, ReleaseState, Request
from graylift.errors import GrayliftError, StateError
from graylift.redact import mask_url
from graylift.service import Graylift, PlanView, ReleaseRecord
from graylift.store.accounts import (
    AccountStore,
    AuditEntry,
    FreezeWindow,
    Missing,
    Policy,
    ReleaseInfo,
    ReleaseRequest,
    Token,
    User,
    Visible,
    Webhook,
)
from graylift.store.queries import Queries

SESSION_HOURS = 12
REQUEST_HOURS = 24
TOKEN_TOUCH_SECONDS = 60
LOGIN_FAILURES = 5
LOGIN_WINDOW = timedelta(minutes=5)
TRIGGERS = ("console", "api", "cli", "webhook")
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@"
T = TypeVar("T")


class Frozen(StateError):
    """A freeze window is in force for the app/env (HTTP 423)."""


class InputError(GrayliftError):
    """A value given to the server is not acceptable (HTTP 422)."""


@dataclass(frozen=True)
class Actor:
    """Who is asking, with what grants, through what (session, token:NAME, cli), from where, and how it
    should be labelled on a release it starts (console, api, cli, webhook)."""

    name: str
    grants: tuple[Grant, ...]
    via: str
    source: str
    trigger: str = "api"

    @property
    def is_admin(self) -> bool:
        return may(self.grants, Action.ADMINISTER)


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


Notify = Callable[[str, dict[str, Any]], None]


def _nothing(event: str, data: dict[str, Any]) -> None:
    return None


def local_actor(name: str) -> Actor:
    """The person at the server's own shell (``graylift users ...``): an admin by having the database."""
    return Actor(f"local:{name}", (Grant(ANY, ANY, Role.ADMIN),), "cli", "local", "cli")


def check_name(value: str, what: str, max_len: int = 64) -> str:
    if not value or len(value) > max_len or any(ch not in NAME_CHARS for ch in value):
        raise InputError(f"{what} must be 1-{max_len} characters of letters, digits and . _ - @; got {value!r}")
    return value


def check_pattern(value: str, what: str) -> str:
    return value if value == ANY else check_name(value, what, 128)


class Desk:
    def __init__(self, gl: Graylift, *, now: Callable[[], datetime] | None = None,
                 notify: Notify = _nothing) -> None:
        self.gl = gl
        self.accounts = AccountStore.of(gl.store)
        self.queries = Queries.of(gl.store)
        self._now = now or self.accounts.now
        self.notify = notify

    # ------------------------------------------------------------------ who is asking
    def actor_for(self, user: User, *, via: str, source: str, trigger: str) -> Actor:
        grants = tuple(Grant(g.app, g.env, parse_role(g.role)) for g in self.accounts.grants(user.id))
        return Actor(user.name, grants, via, source, trigger)

    def authenticate_token(self, token: str, *, source: str, trigger: str = "api") -> Actor:
        found = self.accounts.token_by_hash(secrets.token_hash(token)) if token.startswith("glt_") else None
        if found is None:
            raise Unauthenticated("the API token is not valid")
        tok, user = found
        now = self._now()
        if tok.revoked_at is not None:
            raise Unauthenticated(f"the API token {tok.prefix}... was revoked")
        if tok.expires_at is not None and tok.expires_at <= now:
            raise Unauthenticated(f"the API token {tok.prefix}... expired on {tok.expires_at:%Y-%m-%d %H:%M} UTC")
        if user.disabled:
            raise Unauthenticated(f"user {user.name} is disabled")
        if tok.last_used_at is None or (now - tok.last_used_at).total_seconds() > TOKEN_TOUCH_SECONDS:
            self.accounts.touch_token(tok.id, now)
        return self.actor_for(user, via=f"token:{tok.name}", source=source,
                              trigger=trigger if trigger in TRIGGERS else "api")

    def login(self, name: str, password: str, *, source: str) -> tuple[str, str, Actor]:
        """(session id for the cookie, CSRF token, actor); Unauthenticated with one message for any failure.
        After LOGIN_FAILURES failed logins of a name within LOGIN_WINDOW, its logins are refused until the window
        passes (read from the audit log, so every server on the database agrees)."""
        since = self._now() - LOGIN_WINDOW
        recent = [e for e in self.accounts.audit_entries(visible=None, actor=name[:64] or "?", action="login",
                                                         limit=LOGIN_FAILURES) if e.at > since]
        if len(recent) >= LOGIN_FAILURES and all(e.outcome == "denied" for e in recent):
            raise Unauthenticated(f"too many failed logins for {name}; try again in "
                                  f"{int(LOGIN_WINDOW.total_seconds() // 60)} minutes")
        found = self.accounts.password_hash(name) if len(name) <= 64 else None
        user, stored = found if found is not None else (None, None)
        ok = secrets.verify_password(stored, password)
        if user is None or not ok or user.disabled:
            self.accounts.audit(actor=name[:64] or "?", via="password", source=source, action="login", target="console",
                                outcome="denied", detail={})
            raise Unauthenticated("wrong user name or password")
        session_id, csrf = secrets.new_session_id(), secrets.new_csrf()
        self.accounts.add_session(secrets.token_hash(session_id), user.name, csrf,
                                  self._now() + timedelta(hours=SESSION_HOURS))
        actor = self.actor_for(user, via="session", source=source, trigger="console")
        self._audit(actor, "login", "console", "ok")
        return session_id, csrf, actor

    def authenticate_session(self, session_id: str, *, source: str) -> tuple[Actor, str]:
        found = self.accounts.session(secrets.token_hash(session_id))
        if found is None or found.expires_at <= self._now() or found.user.disabled:
            raise Unauthenticated("not logged in, or the session ended; log in again")
        return self.actor_for(found.user, via="session", source=source, trigger="console"), found.csrf

    def logout(self, actor: Actor, session_id: str) -> None:
        self.accounts.end_session(secrets.token_hash(session_id))
        self._audit(actor, "logout", "console", "ok")

    # ------------------------------------------------------------------ checks and the audit
    def require(self, actor: Actor, action: Action, app: str = ANY, env: str = ANY, target: str = "") -> None:
        try:
            check(actor.name, actor.grants, action, app, env)
        except Denied as exc:
            self._audit(actor, action.value, target or _where(app, env), "denied", app, env, {"error": str(exc)})
            raise

    def can(self, actor: Actor, action: Action, app: str = ANY, env: str = ANY) -> bool:
        return may(actor.grants, action, app, env)

    def visible(self, actor: Actor) -> Visible | None:
        """None: everything; else the (app, env) patterns the actor may view."""
        if self.can(actor, Action.VIEW):
            return None
        return [(g.app, g.env) for g in actor.grants]

    def _audit(self, actor: Actor, action: str, target: str, outcome: str, app: str | None = None,
               env: str | None = None, detail: dict[str, Any] | None = None) -> None:
        clean = {k: mask_url(v) if isinstance(v, str) else v for k, v in (detail or {}).items()}
        self.accounts.audit(actor=actor.name, via=actor.via, source=actor.source, action=action, target=target,
                            outcome=outcome, app=None if app == ANY else app, env=None if env == ANY else env,
                            detail=clean)

    def _audited(self, actor: Actor, action: str, target: str, app: str | None, env: str | None,
                 work: Callable[[], T], detail: dict[str, Any] | None = None) -> T:
        try:
            result = work()
        except GrayliftError as exc:
            self._audit(actor, action, target, "refused", app, env, (detail or {}) | {"error": str(exc)})
            raise
        self._audit(actor, action, target, "ok", app, env, detail)
        return result

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

    def requests(self, actor: Actor, *, state: str | None = "waiting", app: str | None = None,
                 env: str | None = None, limit: int = 100) -> list[ReleaseRequest]:
        found = self.accounts.requests(state=state, app=app, env=env, limit=limit)
        return [r for r in found if self.can(actor, Action.VIEW, r.app, r.env)]

    def request(self, actor: Actor, request_id: int) -> ReleaseRequest:
        req = self._fresh(self.accounts.request(request_id))
        self.require(actor, Action.VIEW, req.app, req.env, f"request #{request_id}")
        return req

    # ------------------------------------------------------------------ planning and starting
    async def plan(self, actor: Actor, app: str, env: str, version: str | None) -> PlanView:
        self.require(actor, Action.PLAN, app, env)
        return await self.gl.plan(app, env, version)

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
            needed = approvals_needed(self._policies(), app, env, ReleaseKind.RELEASE.value)
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
            needed = approvals_needed(self._policies(), app, env, ReleaseKind.ROLLBACK.value)
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

    def _check_freeze(self, actor: Actor, app: str, env: str, override: str | None, target: str) -> None:
        window = active_freeze(self._freezes(), app, env, self._now())
        if window is None:
            return
        if not override:
            raise Frozen(f"{app} ({env}) is frozen until {window.ends_at:%Y-%m-%d %H:%M} UTC by {window.created_by}: "
                         f"{window.reason}. An admin may release with an override reason")
        self.require(actor, Action.OVERRIDE_FREEZE, app, env, target)

    def _new_request(self, actor: Actor, app: str, env: str, kind: str, version: str | None, reason: str,
                     ticket: str, needed: int) -> ReleaseRequest:
        req = self.accounts.create_request(
            app=app, env=env, kind=kind, version=version, reason=reason, ticket=ticket, trigger=actor.trigger,
            requested_by=actor.name, approvals_needed=needed,
            expires_at=self._now() + timedelta(hours=REQUEST_HOURS),
            message=f"waiting for {needed} approval(s) by someone other than {actor.name}")
        self._audit(actor, "request", f"request #{req.id}", "ok", app, env,
                    {"kind": kind, "version": version or "", "reason": reason, "ticket": ticket, "approvals": needed})
        self.notify("approval_requested", {"request": req, "approvers": self.approvers(app, env, actor.name)})
        return req

    def approvers(self, app: str, env: str, requester: str) -> list[str]:
        holders = self.accounts.holders((Role.APPROVER.value, Role.ADMIN.value))
        names = {user for user, g in holders if Grant(g.app, g.env, parse_role(g.role)).matches(app, env)}
        return sorted(names - {requester})

    # ------------------------------------------------------------------ approvals
    async def approve(self, actor: Actor, request_id: int, comment: str = "") -> ReleaseRequest:
        req = self._fresh(self.accounts.request(request_id))
        target = f"request #{request_id}"
        self.require(actor, Action.APPROVE, req.app, req.env, target)
        if actor.name == req.requested_by:
            error = f"{actor.name} requested release request #{request_id}; someone else must approve it"
            self._audit(actor, "approve", target, "denied", req.app, req.env, {"error": error})
            raise Denied(error)
        if req.state != "waiting":
            raise self._refused(actor, "approve", req, f"release request #{request_id} is {req.state}, not waiting")
        self.accounts.add_approval(request_id, actor.name, "approve", comment)
        self._audit(actor, "approve", target, "ok", req.app, req.env, {"comment": comment})
        approved = [a for a in self.accounts.approvals(request_id) if a.decision == "approve"]
        if len(approved) < req.approvals_needed:
            return self.accounts.request(request_id)
        if self.accounts.move_request(request_id, "approved", f"approved by {', '.join(a.user for a in approved)}",
                                      expect="waiting"):
            await self._start_request(actor, self.accounts.request(request_id))
        return self.accounts.request(request_id)

    def reject(self, actor: Actor, request_id: int, comment: str = "") -> ReleaseRequest:
        req = self._fresh(self.accounts.request(request_id))
        target = f"request #{request_id}"
        self.require(actor, Action.APPROVE, req.app, req.env, target)
        if req.state != "waiting":
            raise self._refused(actor, "reject", req, f"release request #{request_id} is {req.state}, not waiting")
        self.accounts.add_approval(request_id, actor.name, "reject", comment)
        self.accounts.move_request(request_id, "rejected", f"rejected by {actor.name}: {comment}".rstrip(": "),
                                   expect="waiting")
        self._audit(actor, "reject", target, "ok", req.app, req.env, {"comment": comment})
        req = self.accounts.request(request_id)
        self.notify("approval_rejected", {"request": req, "by": actor.name})
        return req

    def cancel(self, actor: Actor, request_id: int) -> ReleaseRequest:
        req = self._fresh(self.accounts.request(request_id))
        target = f"request #{request_id}"
        if actor.name != req.requested_by:
            self.require(actor, Action.ABORT, req.app, req.env, target)
        else:
            self.require(actor, Action.VIEW, req.app, req.env, target)
        if req.state not in ("waiting", "approved"):
            raise self._refused(actor, "cancel", req, f"release request #{request_id} is {req.state}")
        self.accounts.move_request(request_id, "cancelled", f"cancelled by {actor.name}", expect=req.state)
        self._audit(actor, "cancel", target, "ok", req.app, req.env)
        return self.accounts.request(request_id)

    async def start_approved(self, actor: Actor, request_id: int) -> ReleaseRequest:
        """Start an approved request whose start was refused before (a freeze, a running release)."""
        req = self._fresh(self.accounts.request(request_id))
        self.require(actor, Action.START, req.app, req.env, f"request #{request_id}")
        if req.state != "approved":
            raise self._refused(actor, "start", req, f"release request #{request_id} is {req.state}, not approved")
        await self._start_request(actor, req)
        return self.accounts.request(request_id)

    async def _start_request(self, actor: Actor, req: ReleaseRequest) -> None:
        """Create the release from the request's own fields, on behalf of its requester."""
        target = f"request #{req.id}"
        try:
            if req.kind == ReleaseKind.RELEASE.value:
                window = active_freeze(self._freezes(), req.app, req.env, self._now())
                if window is not None:
                    raise Frozen(f"approved, but {req.app} ({req.env}) is frozen until "
                                 f"{window.ends_at:%Y-%m-%d %H:%M} UTC ({window.reason}); start it after that")
                assert req.version is not None
                rec = await self.gl.start_release(req.app, req.env, req.version, started_by=req.requested_by)
            else:
                rec = await self.gl.start_rollback(req.app, req.env, to_version=req.version,
                                                   started_by=req.requested_by)
        except GrayliftError as exc:
            self.accounts.move_request(req.id, "approved", f"approved; the start was refused: {exc}",
                                       expect="approved")
            self._audit(actor, "start", target, "refused", req.app, req.env, {"error": str(exc)})
            return
        self.accounts.move_request(req.id, "started", f"release #{rec.id}", expect="approved", release_id=rec.id)
        if not self.accounts.release_info([rec.id]):
            self.accounts.add_release_info(rec.id, trigger=req.trigger, reason=req.reason, ticket=req.ticket,
                                           request_id=req.id)
        self._audit(actor, "start", f"release #{rec.id}", "ok", req.app, req.env, {"request": req.id})

    def _fresh(self, req: ReleaseRequest) -> ReleaseRequest:
        """A waiting or approved request past its time is expired (approvals are not kept for ever)."""
        if req.state in ("waiting", "approved") and req.expires_at <= self._now():
            self.accounts.move_request(req.id, "expired", f"expired at {req.expires_at:%Y-%m-%d %H:%M} UTC",
                                       expect=req.state)
            return self.accounts.request(req.id)
        return req

    def _refused(self, actor: Actor, action: str, req: ReleaseRequest, message: str) -> StateError:
        self._audit(actor, action, f"request #{req.id}", "refused", req.app, req.env, {"error": message})
        return StateError(message)

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

    def import_hosts(self, actor: Actor, app: str, env: str, hosts: list[Any]) -> int:
        self.require(actor, Action.HOSTS, app, env)
        names = [h.name for h in hosts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InputError(f"host(s) {', '.join(twice)} appear twice in the list for {app} ({env})")
        self._audited(actor, "hosts_import", f"{app} ({env})", app, env, lambda: self.gl.import_hosts(app, env, hosts),
                      {"hosts": len(hosts)})
        return len(hosts)

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

    # ------------------------------------------------------------------ users, grants and tokens
    def create_user(self, actor: Actor, name: str, password: str | None, grants: Iterable[Grant] = ()) -> User:
        self.require(actor, Action.ADMINISTER, target=f"user {name}")
        check_name(name, "a user name")
        if password is not None and (problem := secrets.password_problem(password)):
            raise InputError(problem)
        grants = list(grants)

        def work() -> User:
            user = self.accounts.create_user(name, secrets.hash_password(password) if password else None,
                                             created_by=actor.name)
            for g in grants:
                self.accounts.set_grant(name, check_pattern(g.app, "app"), check_pattern(g.env, "env"), g.role.value)
            return user

        return self._audited(actor, "user_create", f"user {name}", None, None, work,
                             {"grants": [f"{g.role.value} on {g.app}/{g.env}" for g in grants]})

    def grant(self, actor: Actor, name: str, app: str, env: str, role: Role) -> None:
        self.require(actor, Action.ADMINISTER, target=f"user {name}")
        check_pattern(app, "app")
        check_pattern(env, "env")
        self._audited(actor, "grant", f"user {name}", None, None,
                      lambda: self.accounts.set_grant(name, app, env, role.value),
                      {"role": role.value, "app": app, "env": env})

    def revoke_grant(self, actor: Actor, name: str, app: str, env: str) -> bool:
        self.require(actor, Action.ADMINISTER, target=f"user {name}")
        return self._audited(actor, "grant_revoke", f"user {name}", None, None,
                             lambda: self.accounts.remove_grant(name, app, env), {"app": app, "env": env})

    def set_password(self, actor: Actor, name: str, password: str) -> None:
        if actor.name != name:
            self.require(actor, Action.ADMINISTER, target=f"user {name}")
        if problem := secrets.password_problem(password):
            raise InputError(problem)
        self._audited(actor, "password", f"user {name}", None, None,
                      lambda: self.accounts.set_password(name, secrets.hash_password(password)))

    def set_disabled(self, actor: Actor, name: str, disabled: bool) -> None:
        self.require(actor, Action.ADMINISTER, target=f"user {name}")
        self._audited(actor, "user_disable" if disabled else "user_enable", f"user {name}", None, None,
                      lambda: self.accounts.set_disabled(name, disabled))

    def users(self, actor: Actor) -> list[tuple[User, list[Grant]]]:
        self.require(actor, Action.ADMINISTER, target="users")
        return [(u, [Grant(g.app, g.env, parse_role(g.role)) for g in self.accounts.grants(u.id)])
                for u in self.accounts.users()]

    def create_token(self, actor: Actor, user: str, name: str, *, days: int | None = None) -> tuple[Token, str]:
        """A new API token for ``user`` (oneself, or anyone for an admin): the secret is returned once."""
        if user != actor.name:
            self.require(actor, Action.ADMINISTER, target=f"user {user}")
        check_name(name, "a token name", 128)
        if days is not None and not 0 < days <= 3650:
            raise InputError("a token lives 1 to 3650 days (or without an end)")
        secret = secrets.new_token()
        expires = self._now() + timedelta(days=days) if days else None
        token = self._audited(actor, "token_create", f"user {user}", None, None,
                              lambda: self.accounts.add_token(user, token_name=name,
                                                              prefix=secrets.token_prefix(secret),
                                                              token_hash=secrets.token_hash(secret),
                                                              expires_at=expires),
                              {"name": name, "days": days or 0})
        return token, secret

    def tokens(self, actor: Actor, user: str | None = None) -> list[Token]:
        if user is None and not actor.is_admin:
            user = actor.name
        if user != actor.name:
            self.require(actor, Action.ADMINISTER, target=f"user {user}")
        return self.accounts.tokens(user)

    def revoke_token(self, actor: Actor, token_id: int) -> Token:
        token = self.accounts.token(token_id)
        if token.user != actor.name:
            self.require(actor, Action.ADMINISTER, target=f"token #{token_id}")
        return self._audited(actor, "token_revoke", f"token #{token_id}", None, None,
                             lambda: self.accounts.revoke_token(token_id), {"user": token.user})

    # ------------------------------------------------------------------ policies and freeze windows
    def _policies(self) -> list[Policy]:
        return self.accounts.policies()

    def _freezes(self) -> list[FreezeWindow]:
        """The windows in force now or later."""
        return self.accounts.freezes(ending_after=self._now())

    def policies(self, actor: Actor) -> list[Policy]:
        return self._policies()

    def approvals_needed(self, app: str, env: str, kind: str = "release") -> int:
        return approvals_needed(self._policies(), app, env, kind)

    def set_policy(self, actor: Actor, app: str, env: str, approvals: int, approve_rollbacks: bool) -> Policy:
        self.require(actor, Action.ADMINISTER, target=f"policy {app}/{env}")
        check_pattern(app, "app")
        check_name(env, "env", 128)
        if not 0 <= approvals <= 10:
            raise InputError("approvals must be 0 to 10")
        return self._audited(actor, "policy", f"policy {app}/{env}", None if app == ANY else app, env,
                             lambda: self.accounts.set_policy(app, env, approvals, approve_rollbacks, by=actor.name),
                             {"approvals": approvals, "approve_rollbacks": approve_rollbacks})

    def freezes(self, actor: Actor) -> list[FreezeWindow]:
        return self._freezes()

    def add_freeze(self, actor: Actor, app: str, env: str, starts_at: datetime, ends_at: datetime,
                   reason: str) -> FreezeWindow:
        self.require(actor, Action.ADMINISTER, target="freeze windows")
        check_pattern(app, "app")
        check_pattern(env, "env")
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise InputError("give the window's start and end with a time zone (e.g. 2026-05-01T18:00:00Z)")
        if ends_at <= starts_at:
            raise InputError("a freeze window must end after it starts")
        if not reason.strip():
            raise InputError("a freeze window needs a reason (people will read it when a release is refused)")
        return self._audited(actor, "freeze_add", f"freeze {app}/{env}",
                             None if app == ANY else app, None if env == ANY else env,
                             lambda: self.accounts.add_freeze(app=app, env=env, starts_at=starts_at, ends_at=ends_at,
                                                              reason=reason, created_by=actor.name),
                             {"starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat(), "reason": reason})

    def delete_freeze(self, actor: Actor, freeze_id: int) -> None:
        self.require(actor, Action.ADMINISTER, target=f"freeze #{freeze_id}")

        def work() -> None:
            if not self.accounts.delete_freeze(freeze_id):
                raise Missing(f"no freeze window #{freeze_id}")

        self._audited(actor, "freeze_delete", f"freeze #{freeze_id}", None, None, work)

    # ------------------------------------------------------------------ webhooks
    def add_webhook(self, actor: Actor, *, name: str, channel: str, url: str, secret: str | None, app: str,
                    env: str, events: list[str], template: str | None) -> Webhook:
        from graylift.notify.channels import CHANNELS, EVENTS, check_url

        self.require(actor, Action.ADMINISTER, target=f"webhook {name}")
        check_name(name, "a webhook name")
        check_pattern(app, "app")
        check_pattern(env, "env")
        if channel not in CHANNELS:
            raise InputError(f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
        unknown = [e for e in events if e not in EVENTS]
        if unknown:
            raise InputError(f"unknown event(s) {', '.join(unknown)}; known: {', '.join(EVENTS)}")
        check_url(url)
        return self._audited(actor, "webhook_add", f"webhook {name}", None, None,
                             lambda: self.accounts.add_webhook(name=name, channel=channel, url=url, secret=secret,
                                                               app=app, env=env, events=events, template=template,
                                                               created_by=actor.name),
                             {"channel": channel, "url": mask_webhook_url(url), "events": events})

    def webhooks(self, actor: Actor) -> list[Webhook]:
        self.require(actor, Action.ADMINISTER, target="webhooks")
        return [replace(w, url=mask_webhook_url(w.url), secret="***" if w.secret else None)
                for w in self.accounts.webhooks()]

    def delete_webhook(self, actor: Actor, hook_id: int) -> None:
        self.require(actor, Action.ADMINISTER, target=f"webhook #{hook_id}")
        self._audited(actor, "webhook_delete", f"webhook #{hook_id}", None, None,
                      lambda: self.accounts.delete_webhook(hook_id))

    # ------------------------------------------------------------------ the audit log
    def audit_log(self, reader: Actor, *, actor: str | None = None, action: str | None = None,
                  app: str | None = None, env: str | None = None, before_id: int | None = None,
                  limit: int = 100) -> list[AuditEntry]:
        """Newest first: every entry for an admin, else the entries of the apps/envs the reader has a role on."""
        visible = None if reader.is_admin else [(g.app, g.env) for g in reader.grants]
        return self.accounts.audit_entries(visible=visible, actor=actor, action=action, app=app, env=env,
                                           before_id=before_id, limit=limit)

    def run(self, coro: Any) -> Any:
        """Run a coroutine of the desk from synchronous code (the CLI)."""
        return asyncio.run(coro)


def mask_webhook_url(url: str) -> str:
    """Scheme, host and path only: robot URLs carry their token in the query or the path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path
    if "hooks.slack.com" in parts.netloc:
        path = "/services/***"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{path}" + (
        "?***" if parts.query else "")


def _where(app: str, env: str) -> str:
    return "everything" if app == ANY and env == ANY else f"{app} ({env})"
