"""Release requests and their approvals, what each release was started through and why, the approval
policies of environments and the freeze windows (the rules that apply them: :mod:`graylift.auth.rules`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from graylift.store import tables as t
from graylift.store.records import from_row
from graylift.store.serverbase import AccountError, Missing, ServerStore


@dataclass(frozen=True)
class ReleaseRequest:
    id: int
    app: str
    env: str
    kind: str
    version: str | None
    reason: str
    ticket: str
    trigger: str
    requested_by: str
    approvals_needed: int
    state: str
    message: str
    release_id: int | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Approval:
    user: str
    decision: str
    comment: str
    at: datetime


@dataclass(frozen=True)
class ReleaseInfo:
    release_id: int
    trigger: str
    reason: str
    ticket: str
    request_id: int | None
    override: str | None


@dataclass(frozen=True)
class Policy:
    """How many approvals (by people other than the requester) a release of app/env (* for every app) needs."""

    app: str
    env: str
    approvals: int
    approve_rollbacks: bool = False
    updated_by: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class FreezeWindow:
    """No release of app/env (* for every one) from starts_at until ends_at, unless an admin overrides it."""

    id: int
    app: str
    env: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str


class ApprovalStore(ServerStore):
    # ------------------------------------------------------------------ release requests and approvals
    def create_request(self, *, app: str, env: str, kind: str, version: str | None, reason: str, ticket: str,
                       trigger: str, requested_by: str, approvals_needed: int, expires_at: datetime,
                       message: str = "") -> ReleaseRequest:
        now = self._now()
        with self._write() as conn:
            request_id = conn.execute(sa.insert(t.release_requests).values(
                app=app, env=env, kind=kind, version=version, reason=reason, ticket=ticket, trigger=trigger,
                requested_by=requested_by, approvals_needed=approvals_needed, state="waiting", message=message,
                release_id=None, created_at=now, expires_at=expires_at, updated_at=now,
            ).returning(t.release_requests.c.id)).scalar_one()
        return self.request(request_id)

    def request(self, request_id: int) -> ReleaseRequest:
        if not 0 < request_id < 2**63:
            raise Missing(f"no release request #{request_id}")
        with self._read() as conn:
            row = conn.execute(sa.select(t.release_requests).where(t.release_requests.c.id == request_id)
                               ).mappings().first()
        if row is None:
            raise Missing(f"no release request #{request_id}")
        return _request(row)

    def requests(self, *, state: str | None = None, app: str | None = None, env: str | None = None,
                 release_id: int | None = None, limit: int = 100) -> list[ReleaseRequest]:
        c = t.release_requests.c
        return self.newest(_request, t.release_requests, limit, (c.state, state), (c.app, app), (c.env, env),
                           (c.release_id, release_id))

    def move_request(self, request_id: int, state: str, message: str, *, expect: str,
                     release_id: int | None = None) -> bool:
        """Move a request from ``expect`` to ``state``; False if it was not in ``expect`` (someone else moved it)."""
        return self.move(t.release_requests, request_id, state, message, expect=expect, release_id=release_id)

    def add_approval(self, request_id: int, user: str, decision: str, comment: str) -> Approval:
        try:
            with self._write_engine.begin() as conn:
                conn.execute(sa.insert(t.approvals).values(request_id=request_id, user=user, decision=decision,
                                                           comment=comment, at=self._now()))
        except IntegrityError:
            raise AccountError(f"{user} already decided on release request #{request_id}") from None
        return next(a for a in self.approvals(request_id) if a.user == user)

    def approvals(self, request_id: int) -> list[Approval]:
        c = t.approvals.c
        with self._read() as conn:
            return [Approval(r.user, r.decision, r.comment, r.at) for r in
                    conn.execute(sa.select(t.approvals).where(c.request_id == request_id).order_by(c.at))]

    # ------------------------------------------------------------------ release info
    def add_release_info(self, release_id: int, *, trigger: str, reason: str, ticket: str,
                         request_id: int | None = None, override: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(sa.insert(t.release_info).values(release_id=release_id, trigger=trigger, reason=reason,
                                                          ticket=ticket, request_id=request_id, override=override))

    def release_info(self, release_ids: list[int]) -> dict[int, ReleaseInfo]:
        if not release_ids:
            return {}
        with self._read() as conn:
            rows = conn.execute(sa.select(t.release_info).where(t.release_info.c.release_id.in_(release_ids)))
            return {r.release_id: ReleaseInfo(r.release_id, r.trigger, r.reason, r.ticket, r.request_id, r.override)
                    for r in rows}

    # ------------------------------------------------------------------ policies and freeze windows
    def set_policy(self, app: str, env: str, approvals: int, approve_rollbacks: bool, *, by: str) -> Policy:
        c = t.env_policies.c
        values = {"approvals": approvals, "approve_rollbacks": approve_rollbacks, "updated_by": by,
                  "updated_at": self._now()}
        with self._write() as conn:
            if not conn.execute(sa.update(t.env_policies).where(c.app == app, c.env == env).values(values)).rowcount:
                conn.execute(sa.insert(t.env_policies).values(app=app, env=env, **values))
        return next(p for p in self.policies() if (p.app, p.env) == (app, env))

    def delete_policy(self, app: str, env: str) -> bool:
        c = t.env_policies.c
        with self._write() as conn:
            return bool(conn.execute(sa.delete(t.env_policies).where(c.app == app, c.env == env)).rowcount)

    def policies(self) -> list[Policy]:
        c = t.env_policies.c
        with self._read() as conn:
            return [Policy(r.app, r.env, r.approvals, bool(r.approve_rollbacks), r.updated_by, r.updated_at)
                    for r in conn.execute(sa.select(t.env_policies).order_by(c.app, c.env))]

    def add_freeze(self, *, app: str, env: str, starts_at: datetime, ends_at: datetime, reason: str,
                   created_by: str) -> FreezeWindow:
        with self._write() as conn:
            freeze_id = conn.execute(sa.insert(t.freeze_windows).values(
                app=app, env=env, starts_at=starts_at, ends_at=ends_at, reason=reason, created_by=created_by,
                created_at=self._now()).returning(t.freeze_windows.c.id)).scalar_one()
        return next(f for f in self.freezes() if f.id == freeze_id)

    def freezes(self, *, ending_after: datetime | None = None) -> list[FreezeWindow]:
        c = t.freeze_windows.c
        query = sa.select(t.freeze_windows).order_by(c.starts_at, c.id)
        if ending_after is not None:
            query = query.where(c.ends_at > ending_after)
        with self._read() as conn:
            return [from_row(FreezeWindow, r) for r in conn.execute(query)]

    def delete_freeze(self, freeze_id: int) -> bool:
        with self._write() as conn:
            return bool(conn.execute(sa.delete(t.freeze_windows).where(t.freeze_windows.c.id == freeze_id)).rowcount)


def _request(r: Any) -> ReleaseRequest:
    return from_row(ReleaseRequest, r)
