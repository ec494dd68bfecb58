"""Per-backend concurrency limits that survive several event loops in one process (tests, CLI runs)."""

from __future__ import annotations

import asyncio


class LoopSemaphores:
    """One asyncio.Semaphore per key, made anew when the running loop changes.

    A semaphore keyed by ``id(loop)`` can outlive its loop and hand its permits to futures of a dead
    loop when the id is reused; comparing the loop object itself (kept referenced here) cannot.
    """

    def __init__(self, permits: int) -> None:
        self.permits = permits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_key: dict[str, asyncio.Semaphore] = {}

    def __call__(self, key: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._by_key = loop, {}
        if key not in self._by_key:
            self._by_key[key] = asyncio.Semaphore(self.permits)
        return self._by_key[key]
