"""Approvals at the desk: where an environment needs them, a release is first an immutable request, started
from its own fields once enough people other than the requester approved it; the policies that say how many,
and the freeze windows."""

from __future__ import annotations

from datetime import datetime, timedelta

from graylift.auth.base import Actor, DeskBase, Frozen, InputError, check_name, check_pattern, grant_of
from graylift.auth.roles import ANY, Action, Denied, Role
from graylift.auth.rules import active_freeze, approvals_needed
from graylift.core.state import ReleaseKind
from graylift.errors import GrayliftError, StateError
from graylift.store.accounts import FreezeWindow, Missing, Policy, ReleaseRequest

REQUEST_HOURS = 24


class ApprovalDesk(DeskBase):
    """Release requests and the decisions on them; policies and freeze windows."""

    # ------------------------------------------------------------------ requests
    def requests(self, actor: Actor, *, state: str | None = "waiting", app: str | None = None,
                 env: str | None = None, limit: int = 100) -> list[ReleaseRequest]:
        found = self.accounts.requests(state=state, app=app, env=env, limit=limit)
        return [r for r in found if self.can(actor, Action.VIEW, r.app, r.env)]

    def request(self, actor: Actor, request_id: int) -> ReleaseRequest:
        req = self._fresh(self.accounts.request(request_id))
        self.require(actor, Action.VIEW, req.app, req.env, f"request #{request_id}")
        return req

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
        names = {user for user, g in holders if grant_of(g).matches(app, env)}
        return sorted(names - {requester})

    # ------------------------------------------------------------------ deciding on them
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

    # ------------------------------------------------------------------ policies and freeze windows
    def _freezes(self) -> list[FreezeWindow]:
        """The windows in force now or later."""
        return self.accounts.freezes(ending_after=self._now())

    def policies(self, actor: Actor) -> list[Policy]:
        return self.accounts.policies()

    def approvals_needed(self, app: str, env: str, kind: str = "release") -> int:
        return approvals_needed(self.accounts.policies(), app, env, kind)

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

    def _check_freeze(self, actor: Actor, app: str, env: str, override: str | None, target: str) -> None:
        window = active_freeze(self._freezes(), app, env, self._now())
        if window is None:
            return
        if not override:
            raise Frozen(f"{app} ({env}) is frozen until {window.ends_at:%Y-%m-%d %H:%M} UTC by {window.created_by}: "
                         f"{window.reason}. An admin may release with an override reason")
        self.require(actor, Action.OVERRIDE_FREEZE, app, env, target)
