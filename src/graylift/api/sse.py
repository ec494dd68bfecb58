"""Server-sent events of one release: what is new in its journal and its state, polled from the store.

A stream can be left and re-attached: every event carries the id of the last journal entry it covers, and a
client that reconnects with ``Last-Event-ID`` (browsers do it by themselves) or ``?after=`` gets what it
missed and no more. The first events of a stream are a snapshot, so a page opened on a running release is
live at once. The stream ends when the release finishes (an ``end`` event), when the reader's access ends
(checked every few seconds: a revoked token or a disabled user stops it), or when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from graylift.api.deps import ServerSettings, desk_of, reauth
from graylift.auth import Actor
from graylift.errors import GrayliftError
from graylift.service import Graylift, HostRunRecord, JournalEntry, ReleaseRecord

RECHECK_SECONDS = 5.0
MAX_ENTRIES = 500  # per event batch: a long journal never floods a browser


@dataclass(frozen=True)
class Tick:
    """What one poll found: the release, its host runs, the journal entries since the last one."""

    release: ReleaseRecord
    runs: list[HostRunRecord]
    entries: list[JournalEntry]
    first: bool
    changed: bool


Render = Callable[[Tick], list[tuple[str, str]]]


def message(event: str, data: str, event_id: int | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in (data.splitlines() or [""])]
    return "\n".join(lines) + "\n\n"


def response(request: Request, actor: Actor, release_id: int, after: int | None, render: Render) -> StreamingResponse:
    """The stream of ``release_id`` as ``render`` draws each tick, for as long as ``actor`` may view it (the
    API's JSON events and the console's HTML fragments)."""
    desk = desk_of(request)
    settings: ServerSettings = request.app.state.settings
    return StreamingResponse(
        stream(request, desk.gl, release_id, start_after(request, after), render,
               lambda: desk.release(reauth(request, actor), release_id), poll=settings.stream_poll,
               heartbeat=settings.stream_heartbeat, stopping=request.app.state.stopping),
        media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def start_after(request: Request, after: int | None) -> int:
    last = request.headers.get("last-event-id", "")
    if last.isdigit() and len(last) < 19:
        return int(last)
    return after or 0


async def stream(request: Request, gl: Graylift, release_id: int, after: int, render: Render,
                 still_allowed: Callable[[], object], *, poll: float, heartbeat: float,
                 stopping: asyncio.Event) -> AsyncIterator[str]:
    last = after
    seen: tuple[object, ...] | None = None
    checked = beat = time.monotonic()
    yield "retry: 2000\n\n"
    first = True
    while not stopping.is_set():
        if await request.is_disconnected():
            return
        try:
            rec = await run_in_threadpool(gl.release, release_id)
            entries = await run_in_threadpool(gl.store.journal_entries, release_id, None, last)
            entries = entries[:MAX_ENTRIES]
            key = (rec.state, rec.phase, rec.message, rec.requested, rec.updated_at, rec.wait_until)
            changed = first or bool(entries) or key != seen
            runs = await run_in_threadpool(gl.host_runs, release_id) if changed else []
        except GrayliftError as exc:
            yield message("error", str(exc))
            return
        seen = key
        if entries:
            last = entries[-1].id
        if changed:
            for event, data in render(Tick(rec, runs, entries, first, changed)):
                yield message(event, data, last)
            beat = time.monotonic()
        first = False
        if rec.finished and not entries:
            yield message("end", rec.state.value, last)
            return
        now = time.monotonic()
        if now - checked > RECHECK_SECONDS:
            try:
                await run_in_threadpool(still_allowed)
            except GrayliftError as exc:
                yield message("error", str(exc))
                return
            checked = now
        if now - beat > heartbeat:
            yield ": keep-alive\n\n"
            beat = now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=poll)
