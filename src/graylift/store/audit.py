"""The audit log: append-only, one entry for every action through the server, denials and refusals too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from graylift.store import tables as t
from graylift.store.records import from_row
from graylift.store.serverbase import ServerStore, Visible


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


class AuditLog(ServerStore):
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
        return self.newest(lambda r: from_row(AuditEntry, r, detail=dict(r["detail"] or {})), t.audit_log, limit,
                           (c.actor, actor), (c.action, action), (c.app, app), (c.env, env),
                           before_id=before_id, visible=visible)
