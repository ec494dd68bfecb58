"""Per-event-loop state of the adapters: concurrency limits and shared reads.

`graylift serve` drives each release in a thread with its own event loop, and tests and CLI runs make one loop
after another: an asyncio primitive belongs to one loop, so each loop gets its own, kept as long as the loop
lives (never replaced because another loop asked in between) and dropped with it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

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
