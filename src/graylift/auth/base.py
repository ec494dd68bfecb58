"""The desk's ground floor: who is asking (:class:`Actor`), the role check every action starts with and the
audit entry it leaves (denials and refusals too), and the checks of the names given to the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from graylift.auth.roles import ANY, Action, Denied, Grant, check, may, parse_role
from graylift.errors import EXIT_USAGE, GrayliftError, StateError
from graylift.redact import mask_url
from graylift.service import Graylift
from graylift.store.accounts import AccountStore, GrantRow, Visible
from graylift.store.queries import Queries

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@"
T = TypeVar("T")


class Frozen(StateError):
    """A freeze window is in force for the app/env (HTTP 423)."""


class InputError(GrayliftError):
    """A value given to the server is not acceptable (HTTP 422)."""

    exit_code = EXIT_USAGE


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


Notify = Callable[[str, dict[str, Any]], None]


def _nothing(event: str, data: dict[str, Any]) -> None:
    return None


def check_name(value: str, what: str, max_len: int = 64) -> str:
    if not value or len(value) > max_len or any(ch not in NAME_CHARS for ch in value):
        raise InputError(f"{what} must be 1-{max_len} characters of letters, digits and . _ - @; got {value!r}")
    return value


def check_pattern(value: str, what: str) -> str:
    return value if value == ANY else check_name(value, what, 128)


def grant_of(row: GrantRow) -> Grant:
    return Grant(row.app, row.env, parse_role(row.role))


class DeskBase:
    """The stores every part of the desk works with, the role check and the audit."""

    def __init__(self, gl: Graylift, *, now: Callable[[], datetime] | None = None,
                 notify: Notify = _nothing) -> None:
        self.gl = gl
        self.accounts = AccountStore.of(gl.store)
        self.queries = Queries.of(gl.store)
        self._now = now or self.accounts.now
        self.notify = notify

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


def _where(app: str, env: str) -> str:
    return "everything" if app == ANY and env == ANY else f"{app} ({env})"
