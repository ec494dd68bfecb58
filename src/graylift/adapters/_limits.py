"""Per-event-loop state of the adapters: concurrency limits and shared reads.

`graylift serve` drives each release in a thread with its own event loop, and tests and CLI runs make one loop
after another: an asyncio primitive belongs to one loop, so each loop gets its own, kept as long as the loop
lives (never replaced because another loop asked in between) and dropped with it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One value per running event loop, made by ``make`` at the loop's first :meth:`get`.

    Keyed by the loop object itself, weakly: a loop that ends takes its value with it, and a new loop that
    reuses a dead one's ``id`` cannot inherit its futures or permits. Only a loop's own thread reads or adds
    its entry.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        value = self._by_loop.get(loop)
        if value is None:
            value = self._by_loop[loop] = self._make()
        return value

    def __len__(self) -> int:
        return len(self._by_loop)


class LoopSemaphores:
    """One asyncio.Semaphore of ``permits`` per key and event loop (a backend's URL or socket)."""

    def __init__(self, permits: int) -> None:
        self.permits = permits
        self._by_key: PerLoop[dict[str, asyncio.Semaphore]] = PerLoop(dict)

    def __call__(self, key: str) -> asyncio.Semaphore:
        semaphores = self._by_key.get()
        if key not in semaphores:
            semaphores[key] = asyncio.Semaphore(self.permits)
        return semaphores[key]


@dataclass
class _Key:
    """What one kind of read has in flight: the callers waiting for the next read, and whether one runs."""

    pending: asyncio.Future[Any] | None = None
    running: bool = False


class SharedReads:
    """Reads of a backend's state shared by the callers that want one at once, per event loop.

    A caller gets the answer of a read SENT AFTER IT ASKED, so it sees every change made before it asked (its
    own included: a ``set server``, a PATCH). At most one read of a key runs at a time; the callers that ask
    meanwhile share the next one, and its answer is parsed once for all of them. The poll loops sleep to a
    common tick (:func:`tick`), so a batch of 50 hosts waiting for their servers sends one read a tick, not 50
    (HAProxy's runtime API, nginx Plus's REST API).
    """

    def __init__(self) -> None:
        # per loop: key -> what runs and who waits; the runners (kept referenced until done)
        self._keys: PerLoop[dict[Hashable, _Key]] = PerLoop(dict)
        self._tasks: PerLoop[set[asyncio.Task[None]]] = PerLoop(set)

    async def read(self, key: Hashable, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """``fetch()``'s result from a call begun after this one; ``key`` names what is shared (the socket and
        the command, the URL)."""
        state = self._keys.get().setdefault(key, _Key())
        if state.pending is None:
            loop = asyncio.get_running_loop()
            state.pending = loop.create_future()
            state.pending.add_done_callback(_retrieved)  # a waiter may be gone (cancelled) when it fails
            if not state.running:
                state.running = True
                task = loop.create_task(self._run(state, fetch))
                tasks = self._tasks.get()
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        return await asyncio.shield(state.pending)

    @staticmethod
    async def _run(state: _Key, fetch: Callable[[], Awaitable[Any]]) -> None:
        """Send reads back to back while callers wait for one; each caller's is sent after it asked."""
        waiting: asyncio.Future[Any] | None = None
        try:
            while state.pending is not None:
                waiting, state.pending = state.pending, None  # from here on, a new caller waits for the next
                try:
                    result = await fetch()
                except Exception as exc:
                    waiting.set_exception(exc)
                else:
                    waiting.set_result(result)
        finally:  # cancelled (the loop ends): no caller is left waiting on a read that will not come
            for future in (waiting, state.pending):
                if future is not None and not future.done():
                    future.cancel()
            state.pending, state.running = None, False


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def tick(interval: float) -> None:
    """Sleep to the next multiple of ``interval`` on the loop's clock: every poller of the process wakes at
    the same moment, so their reads are shared."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(interval - loop.time() % interval)
