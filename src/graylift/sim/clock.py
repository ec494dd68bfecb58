"""Virtual time for the simulation: an asyncio event loop that never waits.

When nothing is ready to run, the loop's selector does not block: it moves the loop's clock to the next timer.
So ``asyncio.sleep`` (and every wait of the engine: bakes, heartbeats, health intervals, drain polls) costs no
real time, and a run is a pure function of its inputs: the same seed gives the same interleaving.
"""

from __future__ import annotations

import asyncio
import selectors
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: a wait of ``timeout`` seconds moves the loop's virtual time instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise Deadlock("every task waits on something that no timer will ever wake (a deadlock)")
        self.now += max(0.0, timeout)
        return []


class Deadlock(RuntimeError):
    pass


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        self._virtual = _VirtualSelector()
        self._virtual.now = start
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now

    def set_time(self, now: float) -> None:
        """A loop that was stopped long ago resumes at the run's present."""
        self._virtual.now = max(self._virtual.now, now)


class SimClock:
    """graylift's Clock port on virtual time. ``skew`` moves the wall clock only (not the monotonic one)."""

    def __init__(self) -> None:
        self.offset = 0.0  # virtual seconds already spent by earlier loops (controllers) of the run
        self.loop: VirtualLoop | None = None
        self.loops: list[VirtualLoop] = []  # every loop of the run, closed at its end

    def monotonic(self) -> float:
        return self.loop.time() if self.loop is not None else self.offset

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.monotonic())

    def advance(self, seconds: float) -> None:
        """Time passes while no controller runs (e.g. a dead one's lease going stale)."""
        self.offset = self.monotonic() + seconds
        self.loop = None

    def new_loop(self) -> VirtualLoop:
        if self.loop is not None:
            self.offset = max(self.offset, self.loop.time())
        self.loop = VirtualLoop(self.offset)
        self.loops.append(self.loop)
        return self.loop

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
