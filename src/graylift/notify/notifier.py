"""The notifier: journal -> outbox -> webhooks, on its own thread, never in a release's way.

:meth:`Notifier.scan` reads every release's journal after a cursor kept in the database, turns release events
(:mod:`.events`) into one queued delivery per matching webhook (an event is queued once per webhook, whichever
server saw it first), and :meth:`Notifier.deliver` sends the due ones with a short timeout: in order, one at a
time per webhook, webhooks side by side. A failed attempt is retried with exponential backoff; after
``max_attempts`` the delivery is ``dead``. Both show in the console's webhooks page and in
``GET /api/v1/webhooks/{id}/deliveries``. A release never waits for any of it: the engine writes its journal
and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from graylift.deadline import bounded, whole_request
from graylift.notify.channels import refusal, render
from graylift.notify.events import event_of
from graylift.store import JournalEntry, ReleaseRecord, Store
from graylift.store.accounts import AccountStore, Delivery, ReleaseRequest, Webhook
from graylift.store.queries import Queries

log = logging.getLogger("graylift.notify")
CURSOR = "webhooks"


class Notifier:
    def __init__(self, store: Store, *, public_url: str = "", timeout: float = 5.0, backoff: float = 2.0,
                 max_backoff: float = 600.0, max_attempts: int = 8,
                 on_entries: Callable[[list[JournalEntry]], None] | None = None) -> None:
        self.store = store
        self.accounts = AccountStore.of(store)
        self.queries = Queries.of(store)
        self.public_url = public_url.rstrip("/")
        self.timeout, self.backoff, self.max_backoff, self.max_attempts = timeout, backoff, max_backoff, max_attempts
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.on_entries = on_entries
        self._seen = self.queries.last_journal_id()  # this process's own reading, for the metrics

    # ------------------------------------------------------------------ events -> outbox
    def scan(self) -> int:
        """Queue the deliveries of journal events since the shared cursor; returns how many were queued."""
        self._feed_metrics()
        cursor = self.accounts.cursor(CURSOR, start_at=self.queries.last_journal_id())
        entries = self.queries.journal_after(cursor)
        if not entries:
            return 0
        hooks = [w for w in self.accounts.webhooks() if w.enabled]
        queued = 0
        releases: dict[int, ReleaseRecord] = {}
        for entry in entries:
            if entry.host is not None or not hooks:
                continue
            rec = releases.get(entry.release_id) or self.store.get_release(entry.release_id)
            releases[rec.id] = rec
            event = event_of(entry, rec.kind.value)
            if event is not None:
                queued += self._queue(hooks, event, f"journal:{entry.id}", rec.id, rec.app, rec.env,
                                      self._release_payload(event, rec, entry))
        self.accounts.advance_cursor(CURSOR, entries[-1].id)
        return queued

    def _feed_metrics(self) -> None:
        if self.on_entries is None:
            return
        entries = self.queries.journal_after(self._seen, limit=2000)
        if entries:
            self._seen = entries[-1].id
            self.on_entries(entries)

    def desk_event(self, event: str, data: dict[str, Any]) -> None:
        """Events of the desk (approval requested or rejected): queued at once."""
        req: ReleaseRequest = data["request"]
        hooks = [w for w in self.accounts.webhooks() if w.enabled]
        payload = {"event": event, "release_id": req.id, "request_id": req.id, "app": req.app, "env": req.env,
                   "kind": req.kind, "version": req.version or "(last good)", "from_version": "",
                   "state": req.state, "message": req.message, "by": req.requested_by, "reason": req.reason,
                   "ticket": req.ticket, "approvers": data.get("approvers") or [],
                   "url": f"{self.public_url}/approvals" if self.public_url else ""}
        self._queue(hooks, event, f"request:{req.id}:{event}", None, req.app, req.env, payload)

    def _queue(self, hooks: list[Webhook], event: str, key: str, release_id: int | None, app: str, env: str,
               payload: dict[str, Any]) -> int:
        queued = 0
        for hook in hooks:
            if hook.app not in ("*", app) or hook.env not in ("*", env) or (hook.events and event not in hook.events):
                continue
            queued += self.accounts.enqueue(hook.id, event_key=key, event=event, release_id=release_id,
                                            payload=payload)
        return queued

    def _release_payload(self, event: str, rec: ReleaseRecord, entry: JournalEntry) -> dict[str, Any]:
        message = str(entry.detail.get("message") or rec.message)
        if event == "batch_failed":
            message = f"{entry.step}: {entry.detail.get('failed')} host(s) failed"
        return {"event": event, "release_id": rec.id, "app": rec.app, "env": rec.env, "kind": rec.kind.value,
                "version": rec.version, "from_version": rec.previous_version or "(none)", "state": entry.event,
                "message": message, "by": rec.started_by, "at": entry.at.isoformat(),
                "url": f"{self.public_url}/releases/{rec.id}" if self.public_url else ""}

    # ------------------------------------------------------------------ outbox -> webhooks
    async def deliver(self, client: httpx.AsyncClient) -> int:
        """Send the due deliveries this server claimed; returns how many were sent."""
        claimed = self.accounts.claim_deliveries(self.owner, until=self.accounts.now() + timedelta(seconds=60))
        if not claimed:
            return 0
        hooks = {w.id: w for w in self.accounts.webhooks()}
        queues: dict[int, list[Delivery]] = {}
        for delivery in claimed:  # oldest first
            queues.setdefault(delivery.webhook_id, []).append(delivery)
        results = await asyncio.gather(*(self._send_in_order(client, hooks.get(hook_id), queue)
                                         for hook_id, queue in queues.items()))
        return sum(results)

    async def _send_in_order(self, client: httpx.AsyncClient, hook: Webhook | None, queue: list[Delivery]) -> int:
        """One webhook's deliveries one after another, so a receiver sees a release's events in order (a
        chat showing "succeeded" above "started" misleads); webhooks are served side by side. A failed one is
        retried later and does not hold back the ones after it."""
        sent = 0
        for delivery in queue:
            sent += await self._send(client, hook, delivery)
        return sent

    async def _send(self, client: httpx.AsyncClient, hook: Webhook | None, delivery: Delivery) -> bool:
        if hook is None:
            self.accounts.delivery_failed(delivery.id, "the webhook was deleted", retry_at=None)
            return False
        out = render(hook.channel, hook.url, hook.secret, hook.template, delivery.payload, int(time.time() * 1000))
        try:  # the whole delivery bounded (httpx's timeout bounds each read: a receiver sending a byte now and
            # then held the pass), on this process's running time
            answer = await bounded(client.post(out.url, content=out.body, headers=out.headers,
                                               timeout=self.timeout), self.timeout)
            problem = refusal(hook.channel, answer.status_code, answer.content)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}".replace(hook.url, hook.name)
        except TimeoutError:
            problem = f"no complete answer in {whole_request(self.timeout):g}s"
        if problem is None:
            self.accounts.delivered(delivery.id)
            return True
        attempts = delivery.attempts + 1
        retry_at = None
        if attempts < self.max_attempts:
            wait = min(self.max_backoff, self.backoff * 2 ** (attempts - 1))
            retry_at = self.accounts.now() + timedelta(seconds=wait)
        log.warning("webhook %s: delivery %s (%s) failed (attempt %s): %s", hook.name, delivery.id, delivery.event,
                    attempts, problem)
        self.accounts.delivery_failed(delivery.id, problem, retry_at=retry_at)
        return False

    # ------------------------------------------------------------------ the loop
    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self.scan)
                    await self.deliver(client)
                except Exception:  # the notifier must outlive any one bad event; the log has the cause
                    log.exception("notifier pass failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
