"""Accounts at the desk: signing in (API tokens, passwords, console sessions), users and their grants, API
tokens, webhooks, and reading the audit log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

from graylift.auth import secrets
from graylift.auth.base import Actor, DeskBase, InputError, check_name, check_pattern, grant_of
from graylift.auth.roles import ANY, Action, Grant, Role, Unauthenticated
from graylift.store.accounts import AuditEntry, Token, User, Webhook

SESSION_HOURS = 12
TOKEN_TOUCH_SECONDS = 60
LOGIN_FAILURES = 5
LOGIN_WINDOW = timedelta(minutes=5)
TRIGGERS = ("console", "api", "cli", "webhook")


def local_actor(name: str) -> Actor:
    """The person at the server's own shell (``graylift users ...``): an admin by having the database."""
    return Actor(f"local:{name}", (Grant(ANY, ANY, Role.ADMIN),), "cli", "local", "cli")


class AccountDesk(DeskBase):
    """Who is asking, and the accounts and settings around them."""

    # ------------------------------------------------------------------ who is asking
    def actor_for(self, user: User, *, via: str, source: str, trigger: str) -> Actor:
        grants = tuple(grant_of(g) for g in self.accounts.grants(user.id))
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
        return [(u, [grant_of(g) for g in self.accounts.grants(u.id)])
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


def mask_webhook_url(url: str) -> str:
    """Scheme, host and path only: robot URLs carry their token in the query or the path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path
    if "hooks.slack.com" in parts.netloc:
        path = "/services/***"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{path}" + (
        "?***" if parts.query else "")


