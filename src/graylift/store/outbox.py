"""Webhooks, the outbox of their deliveries (queued once per event and webhook, claimed by one server,
retried, given up), and the notifier's cursor in the journal. Webhook URLs and secrets are stored: they are
needed to send."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from graylift.store import tables as t
from graylift.store.records import from_row
from graylift.store.serverbase import AccountError, Missing, ServerStore, newest_first


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


class Outbox(ServerStore):
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
            return [from_row(Webhook, r, events=tuple(r.events or ()), enabled=bool(r.enabled))
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
        if not ids:
            return []
        found = {d.id: d for d in self.deliveries(ids=ids, limit=len(ids))}
        return [found[i] for i in ids]  # in the order they are due, oldest first

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
        query = newest_first(t.webhook_deliveries, limit, (c.webhook_id, webhook_id), (c.state, state))
        if ids is not None:
            query = query.where(c.id.in_(ids))
        with self._read() as conn:
            return [from_row(Delivery, r, payload=dict(r["payload"] or {})) for r in conn.execute(query).mappings()]

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
