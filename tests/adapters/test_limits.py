"""Per-event-loop state of the adapters (graylift.adapters._limits): `graylift serve` drives each release in a
thread with its own event loop, so a semaphore or a shared read belongs to exactly one loop."""

from __future__ import annotations

import asyncio
import gc

from graylift.adapters._limits import LoopSemaphores, PerLoop


def test_a_loops_semaphore_outlives_another_loops_calls() -> None:
    """Two loops that take turns each keep their own semaphore: the permits one loop holds still count
    after the other loop asked for its own (a limit of 4 per socket stays 4 per loop)."""
    limits = LoopSemaphores(1)
    a, b = asyncio.new_event_loop(), asyncio.new_event_loop()

    async def get() -> asyncio.Semaphore:
        return limits("socket")

    try:
        first = a.run_until_complete(get())
        other = b.run_until_complete(get())
        assert a.run_until_complete(get()) is first
        assert b.run_until_complete(get()) is other and other is not first
    finally:
        a.close()
        b.close()


def test_a_loops_state_goes_with_the_loop() -> None:
    """No state outlives its loop (a long-lived server makes a loop per release), and a new loop that reuses
    a dead one's id starts afresh."""
    made: list[dict[str, int]] = []
    state = PerLoop(lambda: made.append({}) or made[-1])

    async def get() -> dict[str, int]:
        return state.get()

    for _ in range(3):
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(get()) is loop.run_until_complete(get())
        loop.close()
        del loop
        gc.collect()
    assert len(made) == 3 and len(state) == 0
