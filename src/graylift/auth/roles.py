"""Roles per app x environment, and which role each action needs. Pure: no store, no HTTP.

Roles are ordered; each includes the ones before it. A user's role on an (app, env) is the highest of their
grants that match it (``*`` matches every app or every environment):

    ==========  =====================================================================================
    role        may (on the apps and environments of the grant)
    ==========  =====================================================================================
    viewer      see apps, versions, releases, hosts, journals, live events, logs, the audit of them
    developer   + plan (with preflight), survey, start a release (approval rules apply), pause,
                cancel their own request
    releaser    + promote, resume, retry, abort, roll back; the CMDB (import, maintenance, clear)
    approver    + approve or reject a release someone else requested
    admin       + release in a freeze window (with a reason); on ``* / *``: users, grants, policies,
                freeze windows, webhooks, every audit entry
    ==========  =====================================================================================

>>> role_on([Grant("*", "*", Role.VIEWER), Grant("pyapp", "prod", Role.RELEASER)], "pyapp", "prod")
<Role.RELEASER: 'releaser'>
>>> role_on([Grant("pyapp", "*", Role.DEVELOPER)], "shop", "prod") is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from graylift.errors import EXIT_REFUSED, EXIT_USAGE, GrayliftError

ANY = "*"


class Role(StrEnum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    RELEASER = "releaser"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def covers(self, other: Role) -> bool:
        return self.rank >= other.rank


class Action(StrEnum):
    VIEW = "view"
    PLAN = "plan"
    SURVEY = "survey"
    START = "start"
    PAUSE = "pause"
    PROMOTE = "promote"
    RESUME = "resume"
    RETRY = "retry"
    ABORT = "abort"
    ROLLBACK = "rollback"
    HOSTS = "hosts"
    APPROVE = "approve"
    OVERRIDE_FREEZE = "override_freeze"
    ADMINISTER = "administer"  # users, grants, policies, freeze windows, webhooks (on * / *)


NEEDS: dict[Action, Role] = {
    Action.VIEW: Role.VIEWER,
    Action.PLAN: Role.DEVELOPER,
    Action.SURVEY: Role.DEVELOPER,
    Action.START: Role.DEVELOPER,
    Action.PAUSE: Role.DEVELOPER,
    Action.PROMOTE: Role.RELEASER,
    Action.RESUME: Role.RELEASER,
    Action.RETRY: Role.RELEASER,
    Action.ABORT: Role.RELEASER,
    Action.ROLLBACK: Role.RELEASER,
    Action.HOSTS: Role.RELEASER,
    Action.APPROVE: Role.APPROVER,
    Action.OVERRIDE_FREEZE: Role.ADMIN,
    Action.ADMINISTER: Role.ADMIN,
}


class Denied(GrayliftError):
    """Authenticated, but the user's role does not allow the action (HTTP 403)."""

    exit_code = EXIT_REFUSED


class Unauthenticated(GrayliftError):
    """No valid credentials (HTTP 401)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Grant:
    app: str
    env: str
    role: Role

    def matches(self, app: str, env: str) -> bool:
        return self.app in (ANY, app) and self.env in (ANY, env)


def role_on(grants: Iterable[Grant], app: str, env: str) -> Role | None:
    """The highest role of the grants matching (app, env), or None."""
    matching = [g.role for g in grants if g.matches(app, env)]
    return max(matching, key=lambda r: r.rank) if matching else None


def may(grants: Iterable[Grant], action: Action, app: str = ANY, env: str = ANY) -> bool:
    role = role_on(grants, app, env)
    return role is not None and role.covers(NEEDS[action])


def check(user: str, grants: Iterable[Grant], action: Action, app: str = ANY, env: str = ANY) -> None:
    """Raise Denied, naming the user's role and the one needed, unless ``action`` is allowed."""
    grants = list(grants)
    if may(grants, action, app, env):
        return
    role = role_on(grants, app, env)
    where = _where(app, env)
    has = f"is {role.value} on {where}" if role else f"has no role on {where}"
    message = f"{user} {has}; {action.value.replace('_', ' ')} needs {NEEDS[action].value}"
    if role is None:  # perhaps a misspelt app or env: say where the user does have a role (nothing of others')
        held = sorted({f"{g.role.value} on {_where(g.app, g.env)}" for g in grants})
        message += f" ({user} is {', '.join(held)})" if held else f" ({user} has no role anywhere yet)"
    raise Denied(message)


def _where(app: str, env: str) -> str:
    return "everything (* / *)" if app == ANY and env == ANY else f"{app} ({env})"


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise GrayliftError(f"unknown role {value!r}; one of {', '.join(r.value for r in Role)}") from None
