"""Which releases need approval, and freeze windows. Pure: the clock and the rows are passed in.

Approvals: the most specific policy wins, ``(app, env)`` over ``(*, env)``; with none, an environment named
``prod`` or ``production`` needs one approval and any other none. Approvals come from people other than the
requester. Rollbacks need none unless the policy says ``approve_rollbacks`` (a rollback is the way out).

>>> approvals_needed([], "pyapp", "prod", "release"), approvals_needed([], "pyapp", "test", "release")
(1, 0)
>>> approvals_needed([Policy("*", "prod", 2), Policy("pyapp", "prod", 0)], "pyapp", "prod", "release")
0

Freeze windows: no release (rollbacks are not frozen) of a matching app/env while ``starts_at <= now <
ends_at``, unless an admin overrides with a reason.

Policies and windows are the store's records (:mod:`graylift.store.approvals`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from graylift.store.approvals import FreezeWindow, Policy

ANY = "*"
DEFAULT_APPROVAL_ENVS = frozenset({"prod", "production"})


def policy_for(policies: Iterable[Policy], app: str, env: str) -> Policy:
    found = {(p.app, p.env): p for p in policies}
    if (app, env) in found:
        return found[(app, env)]
    if (ANY, env) in found:
        return found[(ANY, env)]
    return Policy(ANY, env, 1 if env.lower() in DEFAULT_APPROVAL_ENVS else 0)


def approvals_needed(policies: Iterable[Policy], app: str, env: str, kind: str) -> int:
    policy = policy_for(policies, app, env)
    if kind == "rollback" and not policy.approve_rollbacks:
        return 0
    return max(0, policy.approvals)


def active_freeze(windows: Iterable[FreezeWindow], app: str, env: str, now: datetime) -> FreezeWindow | None:
    """The matching window in force at ``now`` that ends last, or None."""
    matching = [w for w in windows if covers(w, app, env, now)]
    return max(matching, key=lambda w: w.ends_at) if matching else None


def covers(window: FreezeWindow, app: str, env: str, now: datetime) -> bool:
    return window.app in (ANY, app) and window.env in (ANY, env) and window.starts_at <= now < window.ends_at
