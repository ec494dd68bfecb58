"""The server's tables: users, token and session hashes, grants, release requests and approvals, release info,
environment policies, freeze windows, the audit log, webhooks and their deliveries.

Like :class:`graylift.store.Store`: one short transaction per method, plain frozen records out. Open it over
an open store with :meth:`AccountStore.of` (same engines, same database). It stores hashes, never a token,
session id or password; webhook URLs and secrets are stored (they are needed to send) and never returned by
the listing methods' records unless asked for.

One module a concept, each with its records: :mod:`.users` (users, grants, API tokens, console sessions),
:mod:`.approvals` (release requests and approvals, release info, policies, freeze windows), :mod:`.audit` (the
audit log), :mod:`.outbox` (webhooks, their deliveries, the notifier's cursor); :mod:`.serverbase` what they
share. :class:`AccountStore` is all of them over one database.
"""

from __future__ import annotations

from graylift.errors import StoreError
from graylift.store.approvals import Approval, ApprovalStore, FreezeWindow, Policy, ReleaseInfo, ReleaseRequest
from graylift.store.audit import AuditEntry, AuditLog
from graylift.store.outbox import Delivery, Outbox, Webhook
from graylift.store.serverbase import AccountError, Missing, Visible
from graylift.store.users import GrantRow, Session, Token, User, UserStore


class AccountStore(UserStore, ApprovalStore, AuditLog, Outbox):
    """Every table of the server, over one database."""


__all__ = [
    "AccountError",
    "AccountStore",
    "Approval",
    "AuditEntry",
    "Delivery",
    "FreezeWindow",
    "GrantRow",
    "Missing",
    "Policy",
    "ReleaseInfo",
    "ReleaseRequest",
    "Session",
    "StoreError",
    "Token",
    "User",
    "Visible",
    "Webhook",
]
