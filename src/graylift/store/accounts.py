"""The server's tables: users, token and session hashes, grants, release requests and approvals, release info,
environment policies, freeze windows, the audit log, webhooks and their deliveries.

Like :class:`graylift.store.Store`: one short transaction per method, plain frozen records out. Open it over
an open store with :meth:`AccountStore.of` (same engines, same database). It stores hashes, never a token,
session id or password; webhook URLs and secrets are stored (they are needed to send) and never returned by
the listing methods' records unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from graylift.errors import GrayliftError, StoreError
from graylift.store import tables as t
from graylift.store.base import StoreBase

ANY = "*"


class AccountError(GrayliftError):
    """A user, token, request or webhook already exists, or cannot be changed so."""


class Missing(AccountError):
    """A user, token, request, webhook or freeze window that does not exist."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    disabled: bool
    has_password: bool
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class GrantRow:
    app: str
    env: str
    role: str


@dataclass(frozen=True)
class Token:
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires_at: datetime


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
    updated_at: datetime


@dataclass(frozen=True)
class Approval:
    request_id: int
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
class PolicyRow:
    app: str
    env: str
    approvals: int
    approve_rollbacks: bool
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class FreezeRow:
    id: int
    app: str
    env: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    via: str
    source: str
    action: str
    target: str
    app: str | None
    env: str | None
    outcome: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Webhook:
    id: int
    name: str
    channel: str
    url: str
    secret: str | None
    app: str
    env: str
    events: tuple[str, ...]
    template: str | None
    enabled: bool
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: int
    event_key: str
    event: str
    release_id: int | None
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


Visible = list[tuple[str, str]]
"""(app pattern, env pattern) pairs a reader may see; ``*`` matches all."""


class AccountStore(StoreBase):
    @classmethod
    def of(cls, store: StoreBase) -> AccountStore:
        """The server's tables of the same database, over the store's own engines."""
        return cls(store.url, store._write_engine, store._read_engine, store._now)

    def now(self) -> datetime:
        return self._now()

    # ------------------------------------------------------------------ users and grants
    def create_user(self, name: str, password_hash: str | None, *, created_by: str) -> User:
        try:
            with self._write_engine.begin() as conn:
                conn.execute(sa.insert(t.users).values(name=name, password_hash=password_hash, disabled=False,
                                                       created_at=self._now(), created_by=created_by))
        except IntegrityError:
            raise AccountError(f"user {name} already exists") from None
        return self.user(name)

    def find_user(self, name: str) -> User | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.name == name)).mappings().first()
        return _user(row) if row else None

    def user(self, name: str) -> User:
        found = self.find_user(name)
        if found is None:
            raise Missing(f"no user {name}; `graylift users list` shows them")
        return found

    def users(self) -> list[User]:
        with self._read() as conn:
            return [_user(r) for r in conn.execute(sa.select(t.users).order_by(t.users.c.name)).mappings()]

    def password_hash(self, name: str) -> tuple[User, str | None] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.name == name)).mappings().first()
        return (_user(row), row["password_hash"]) if row else None

    def set_password(self, name: str, password_hash: str | None) -> None:
        self._update_user(name, {"password_hash": password_hash})

    def set_disabled(self, name: str, disabled: bool) -> None:
        user = self.user(name)
        self._update_user(name, {"disabled": disabled})
        if disabled:
            with self._write() as conn:
                conn.execute(sa.delete(t.web_sessions).where(t.web_sessions.c.user_id == user.id))

    def _update_user(self, name: str, values: dict[str, Any]) -> None:
        with self._write() as conn:
            if not conn.execute(sa.update(t.users).where(t.users.c.name == name).values(values)).rowcount:
                raise Missing(f"no user {name}; `graylift users list` shows them")

    def grants(self, user_id: int) -> list[GrantRow]:
        c = t.grants.c
        with self._read() as conn:
            rows = conn.execute(sa.select(c.app, c.env, c.role).where(c.user_id == user_id)
                                .order_by(c.app, c.env)).all()
        return [GrantRow(r.app, r.env, r.role) for r in rows]

    def set_grant(self, name: str, app: str, env: str, role: str) -> None:
        user = self.user(name)
        c = t.grants.c
        with self._write() as conn:
            key = (c.user_id == user.id, c.app == app, c.env == env)
            if not conn.execute(sa.update(t.grants).where(*key).values(role=role)).rowcount:
                conn.execute(sa.insert(t.grants).values(user_id=user.id, app=app, env=env, role=role))

    def remove_grant(self, name: str, app: str, env: str) -> bool:
        user = self.user(name)
        c = t.grants.c
        with self._write() as conn:
            return bool(conn.execute(sa.delete(t.grants).where(c.user_id == user.id, c.app == app,
                                                               c.env == env)).rowcount)

    def holders(self, roles: tuple[str, ...]) -> list[tuple[str, GrantRow]]:
        """(user, grant) of every enabled user with one of ``roles`` anywhere (to find whom to notify)."""
        query = (sa.select(t.users.c.name, t.grants.c.app, t.grants.c.env, t.grants.c.role)
                 .join(t.grants, t.grants.c.user_id == t.users.c.id)
                 .where(t.grants.c.role.in_(roles), t.users.c.disabled.is_(False)).order_by(t.users.c.name))
        with self._read() as conn:
            return [(r.name, GrantRow(r.app, r.env, r.role)) for r in conn.execute(query)]

    # ------------------------------------------------------------------ API tokens
    def add_token(self, name: str, *, token_name: str, prefix: str, token_hash: str,
                  expires_at: datetime | None) -> Token:
        user = self.user(name)
        with self._write() as conn:
            token_id = conn.execute(sa.insert(t.api_tokens).values(
                user_id=user.id, name=token_name, prefix=prefix, token_hash=token_hash, created_at=self._now(),
                expires_at=expires_at, last_used_at=None, revoked_at=None).returning(t.api_tokens.c.id)).scalar_one()
        return self.token(token_id)

    def token(self, token_id: int) -> Token:
        found = self.tokens(token_id=token_id)
        if not found:
            raise Missing(f"no token #{token_id}")
        return found[0]

    def tokens(self, user: str | None = None, *, token_id: int | None = None) -> list[Token]:
        query = (sa.select(t.api_tokens, t.users.c.name.label("user"))
                 .join(t.users, t.users.c.id == t.api_tokens.c.user_id).order_by(t.api_tokens.c.id))
        if user is not None:
            query = query.where(t.users.c.name == user)
        if token_id is not None:
            query = query.where(t.api_tokens.c.id == token_id)
        with self._read() as conn:
            return [_token(r) for r in conn.execute(query).mappings()]

    def token_by_hash(self, token_hash: str) -> tuple[Token, User] | None:
        query = (sa.select(t.api_tokens, t.users.c.name.label("user"))
                 .join(t.users, t.users.c.id == t.api_tokens.c.user_id)
                 .where(t.api_tokens.c.token_hash == token_hash))
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            user = conn.execute(sa.select(t.users).where(t.users.c.id == row["user_id"])).mappings().one()
        return _token(row), _user(user)

    def touch_token(self, token_id: int, at: datetime) -> None:
        with self._write() as conn:
            conn.execute(sa.update(t.api_tokens).where(t.api_tokens.c.id == token_id).values(last_used_at=at))

    def revoke_token(self, token_id: int) -> Token:
        with self._write() as conn:
            done = conn.execute(sa.update(t.api_tokens).where(t.api_tokens.c.id == token_id,
                                                              t.api_tokens.c.revoked_at.is_(None))
                                .values(revoked_at=self._now())).rowcount
        token = self.token(token_id)
        if not done:
            raise AccountError(f"token #{token_id} was already revoked")
        return token

    # ------------------------------------------------------------------ console sessions
    def add_session(self, id_hash: str, name: str, csrf: str, expires_at: datetime) -> None:
        user = self.user(name)
        with self._write() as conn:
            conn.execute(sa.delete(t.web_sessions).where(t.web_sessions.c.expires_at < self._now()))
            conn.execute(sa.insert(t.web_sessions).values(id_hash=id_hash, user_id=user.id, csrf=csrf,
                                                          created_at=self._now(), expires_at=expires_at))

    def session(self, id_hash: str) -> Session | None:
        query = (sa.select(t.web_sessions.c.csrf, t.web_sessions.c.expires_at, t.users)
                 .join(t.users, t.users.c.id == t.web_sessions.c.user_id)
                 .where(t.web_sessions.c.id_hash == id_hash))
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return Session(_user(row), row["csrf"], row["expires_at"])

    def end_session(self, id_hash: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(t.web_sessions).where(t.web_sessions.c.id_hash == id_hash))

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
        query = sa.select(t.release_requests).order_by(c.id.desc()).limit(limit)
        for column, value in ((c.state, state), (c.app, app), (c.env, env), (c.release_id, release_id)):
            if value is not None:
                query = query.where(column == value)
        with self._read() as conn:
            return [_request(r) for r in conn.execute(query).mappings()]

    def move_request(self, request_id: int, state: str, message: str, *, expect: str,
                     release_id: int | None = None) -> bool:
        """Move a request from ``expect`` to ``state``; False if it was not in ``expect`` (someone else moved it)."""
        c = t.release_requests.c
        values: dict[str, Any] = {"state": state, "message": message, "updated_at": self._now()}
        if release_id is not None:
            values["release_id"] = release_id
        with self._write() as conn:
            return bool(conn.execute(sa.update(t.release_requests).where(c.id == request_id, c.state == expect)
                                     .values(values)).rowcount)

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
            return [Approval(r.request_id, r.user, r.decision, r.comment, r.at) for r in
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
    def set_policy(self, app: str, env: str, approvals: int, approve_rollbacks: bool, *, by: str) -> PolicyRow:
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

    def policies(self) -> list[PolicyRow]:
        c = t.env_policies.c
        with self._read() as conn:
            return [PolicyRow(r.app, r.env, r.approvals, bool(r.approve_rollbacks), r.updated_by, r.updated_at)
                    for r in conn.execute(sa.select(t.env_policies).order_by(c.app, c.env))]

    def add_freeze(self, *, app: str, env: str, starts_at: datetime, ends_at: datetime, reason: str,
                   created_by: str) -> FreezeRow:
        with self._write() as conn:
            freeze_id = conn.execute(sa.insert(t.freeze_windows).values(
                app=app, env=env, starts_at=starts_at, ends_at=ends_at, reason=reason, created_by=created_by,
                created_at=self._now()).returning(t.freeze_windows.c.id)).scalar_one()
        return next(f for f in self.freezes() if f.id == freeze_id)

    def freezes(self, *, ending_after: datetime | None = None) -> list[FreezeRow]:
        c = t.freeze_windows.c
        query = sa.select(t.freeze_windows).order_by(c.starts_at, c.id)
        if ending_after is not None:
            query = query.where(c.ends_at > ending_after)
        with self._read() as conn:
            return [FreezeRow(r.id, r.app, r.env, r.starts_at, r.ends_at, r.reason, r.created_by, r.created_at)
                    for r in conn.execute(query)]

    def delete_freeze(self, freeze_id: int) -> bool:
        with self._write() as conn:
            return bool(conn.execute(sa.delete(t.freeze_windows).where(t.freeze_windows.c.id == freeze_id)).rowcount)

    # ------------------------------------------------------------------ audit (append-only)
    def audit(self, *, actor: str, via: str, source: str, action: str, target: str, outcome: str,
              app: str | None = None, env: str | None = None, detail: dict[str, Any] | None = None) -> None:
        with self._write() as conn:
            conn.execute(sa.insert(t.audit_log).values(
                at=self._now(), actor=actor[:64], via=via[:64], source=source[:128], action=action[:64],
                target=target[:255], app=app, env=env, outcome=outcome, detail=detail or {}))

    def audit_entries(self, *, visible: Visible | None, actor: str | None = None, action: str | None = None,
                      app: str | None = None, env: str | None = None, before_id: int | None = None,
                      limit: int = 100) -> list[AuditEntry]:
        """Newest first. ``visible`` None: every entry; else only entries of an app/env a pattern matches."""
        c = t.audit_log.c
        query = sa.select(t.audit_log).order_by(c.id.desc()).limit(limit)
        for column, value in ((c.actor, actor), (c.action, action), (c.app, app), (c.env, env)):
            if value is not None:
                query = query.where(column == value)
        if before_id is not None:
            query = query.where(c.id < before_id)
        if visible is not None:
            query = query.where(_visible(c.app, c.env, visible))
        with self._read() as conn:
            return [AuditEntry(r.id, r.at, r.actor, r.via, r.source, r.action, r.target, r.app, r.env, r.outcome,
                               dict(r.detail or {})) for r in conn.execute(query)]

    # ------------------------------------------------------------------ webhooks
    def add_webhook(self, *, name: str, channel: str, url: str, secret: str | None, app: str, env: str,
                    events: list[str], template: str | None, created_by: str) -> Webhook:
        try:
            with self._write_engine.begin() as conn:
                hook_id = conn.execute(sa.insert(t.webhooks).values(
                    name=name, channel=channel, url=url, secret=secret, app=app, env=env, events=events,
                    template=template, enabled=True, created_by=created_by, created_at=self._now(),
                ).returning(t.webhooks.c.id)).scalar_one()
        except IntegrityError:
            raise AccountError(f"a webhook named {name} already exists") from None
        return self.webhook(hook_id)

    def webhook(self, hook_id: int) -> Webhook:
        found = [w for w in self.webhooks() if w.id == hook_id]
        if not found:
            raise Missing(f"no webhook #{hook_id}")
        return found[0]

    def webhooks(self) -> list[Webhook]:
        with self._read() as conn:
            return [Webhook(r.id, r.name, r.channel, r.url, r.secret, r.app, r.env, tuple(r.events or ()),
                            r.template, bool(r.enabled), r.created_by, r.created_at)
                    for r in conn.execute(sa.select(t.webhooks).order_by(t.webhooks.c.id))]

    def set_webhook_enabled(self, hook_id: int, enabled: bool) -> None:
        with self._write() as conn:
            if not conn.execute(sa.update(t.webhooks).where(t.webhooks.c.id == hook_id)
                                .values(enabled=enabled)).rowcount:
                raise Missing(f"no webhook #{hook_id}")

    def delete_webhook(self, hook_id: int) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(t.webhook_deliveries).where(t.webhook_deliveries.c.webhook_id == hook_id))
            if not conn.execute(sa.delete(t.webhooks).where(t.webhooks.c.id == hook_id)).rowcount:
                raise Missing(f"no webhook #{hook_id}")

    def enqueue(self, hook_id: int, *, event_key: str, event: str, release_id: int | None,
                payload: dict[str, Any]) -> bool:
        """Queue one delivery; False if this event was already queued for this webhook (by any server)."""
        now = self._now()
        try:
            with self._write_engine.begin() as conn:
                conn.execute(sa.insert(t.webhook_deliveries).values(
                    webhook_id=hook_id, event_key=event_key[:64], event=event, release_id=release_id,
                    payload=payload, state="pending", attempts=0, next_attempt_at=now, claimed_by=None,
                    claimed_until=None, last_error=None, created_at=now, sent_at=None))
        except IntegrityError:
            return False
        return True

    def claim_deliveries(self, owner: str, *, until: datetime, limit: int = 20) -> list[Delivery]:
        """Due pending deliveries nobody else holds, claimed by ``owner`` until ``until``."""
        c = t.webhook_deliveries.c
        now = self._now()
        due = (sa.select(c.id).where(c.state == "pending", c.next_attempt_at <= now,
                                     sa.or_(c.claimed_until.is_(None), c.claimed_until < now))
               .order_by(c.next_attempt_at, c.id).limit(limit))
        with self._write() as conn:
            if self.is_postgres:
                due = due.with_for_update(skip_locked=True)
            ids = [r.id for r in conn.execute(due)]
            if ids:
                conn.execute(sa.update(t.webhook_deliveries).where(c.id.in_(ids))
                             .values(claimed_by=owner, claimed_until=until))
        return [d for d in self.deliveries(ids=ids)] if ids else []

    def delivered(self, delivery_id: int) -> None:
        attempts = t.webhook_deliveries.c.attempts + 1
        self._delivery(delivery_id, {"state": "sent", "sent_at": self._now(), "attempts": attempts, "last_error": None,
                                     "claimed_by": None, "claimed_until": None})

    def delivery_failed(self, delivery_id: int, error: str, *, retry_at: datetime | None) -> None:
        """A failed attempt: retried at ``retry_at``, or given up (``dead``) when None."""
        values: dict[str, Any] = {"attempts": t.webhook_deliveries.c.attempts + 1, "last_error": error[:2000],
                                  "claimed_by": None, "claimed_until": None}
        values |= {"state": "dead"} if retry_at is None else {"next_attempt_at": retry_at}
        self._delivery(delivery_id, values)

    def _delivery(self, delivery_id: int, values: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(sa.update(t.webhook_deliveries).where(t.webhook_deliveries.c.id == delivery_id)
                         .values(values))

    def deliveries(self, *, webhook_id: int | None = None, state: str | None = None, ids: list[int] | None = None,
                   limit: int = 100) -> list[Delivery]:
        c = t.webhook_deliveries.c
        query = sa.select(t.webhook_deliveries).order_by(c.id.desc()).limit(limit)
        if webhook_id is not None:
            query = query.where(c.webhook_id == webhook_id)
        if state is not None:
            query = query.where(c.state == state)
        if ids is not None:
            query = query.where(c.id.in_(ids))
        with self._read() as conn:
            return [Delivery(r.id, r.webhook_id, r.event_key, r.event, r.release_id, dict(r.payload or {}), r.state,
                             r.attempts, r.next_attempt_at, r.last_error, r.created_at, r.sent_at)
                    for r in conn.execute(query)]

    def delivery_counts(self) -> dict[str, int]:
        c = t.webhook_deliveries.c
        with self._read() as conn:
            return {r.state: int(r.n) for r in conn.execute(
                sa.select(c.state, sa.func.count().label("n")).group_by(c.state))}

    # ------------------------------------------------------------------ the notifier's cursor
    def cursor(self, name: str, *, start_at: int) -> int:
        """The journal id ``name`` has read up to; made ``start_at`` the first time."""
        c = t.notifier_cursor.c
        with self._read() as conn:
            found = conn.execute(sa.select(c.journal_id).where(c.name == name)).scalar()
        if found is not None:
            return int(found)
        try:
            with self._write_engine.begin() as conn:
                conn.execute(sa.insert(t.notifier_cursor).values(name=name, journal_id=start_at))
        except IntegrityError:
            return self.cursor(name, start_at=start_at)
        return start_at

    def advance_cursor(self, name: str, journal_id: int) -> None:
        c = t.notifier_cursor.c
        with self._write() as conn:
            conn.execute(sa.update(t.notifier_cursor).where(c.name == name, c.journal_id < journal_id)
                         .values(journal_id=journal_id))


def _visible(app: sa.ColumnElement[Any], env: sa.ColumnElement[Any], visible: Visible) -> sa.ColumnElement[bool]:
    if not visible:
        return sa.false()
    terms = []
    for app_pattern, env_pattern in visible:
        conds: list[sa.ColumnElement[bool]] = [app.is_not(None)]
        if app_pattern != ANY:
            conds.append(app == app_pattern)
        if env_pattern != ANY:
            conds.append(env == env_pattern)
        terms.append(sa.and_(*conds))
    return sa.or_(*terms)


def _user(r: Any) -> User:
    return User(r["id"], r["name"], bool(r["disabled"]), bool(r["password_hash"]), r["created_at"], r["created_by"])


def _token(r: Any) -> Token:
    return Token(r["id"], r["user"], r["name"], r["prefix"], r["created_at"], r["expires_at"], r["last_used_at"],
                 r["revoked_at"])


def _request(r: Any) -> ReleaseRequest:
    return ReleaseRequest(r["id"], r["app"], r["env"], r["kind"], r["version"], r["reason"], r["ticket"], r["trigger"],
                          r["requested_by"], r["approvals_needed"], r["state"], r["message"], r["release_id"],
                          r["created_at"], r["expires_at"], r["updated_at"])


__all__ = [
    "AccountError",
    "AccountStore",
    "Approval",
    "AuditEntry",
    "Delivery",
    "FreezeRow",
    "GrantRow",
    "Missing",
    "PolicyRow",
    "ReleaseInfo",
    "ReleaseRequest",
    "Session",
    "StoreError",
    "Token",
    "User",
    "Webhook",
]
