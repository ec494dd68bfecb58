"""Per-event-loop state of the adapters (graylift.adapters._limits): `graylift serve` drives each release in a
thread with its own event loop, so a semaphore or a shared read belongs to exactly one loop."""

from __future__ import annotations

import asyncio
import gc

from graylift.adapters._limits import LoopSemaphores, PerLoop, SharedReads


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


async def test_callers_waiting_at_once_share_the_next_read_never_an_older_one() -> None:
    """The first caller's read is on its way when nine more ask: they share ONE next read (sent after they
    asked, so it sees what changed meanwhile), not nine, and none gets the older answer."""
    reads = SharedReads()
    sent: list[int] = []
    gate = asyncio.Event()

    async def fetch() -> int:
        sent.append(len(sent) + 1)
        number = len(sent)
        if number == 1:
            await gate.wait()  # read 1 is on its way while the others ask
        return number

    first = asyncio.create_task(reads.read("k", fetch))
    while not sent:
        await asyncio.sleep(0)
    later = [asyncio.create_task(reads.read("k", fetch)) for _ in range(9)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 1
    assert await asyncio.gather(*later) == [2] * 9
    assert sent == [1, 2]
    assert await reads.read("k", fetch) == 3  # asked after read 2 was sent: a read of its own
    assert await reads.read("other", fetch) == 4  # another key shares nothing


async def test_a_failed_read_fails_its_callers_only() -> None:
    reads = SharedReads()
    answers = iter([RuntimeError("socket gone"), 7])

    async def fetch() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    results = await asyncio.gather(reads.read("k", fetch), reads.read("k", fetch), return_exceptions=True)
    assert [str(r) for r in results] == ["socket gone", "socket gone"]
    assert await reads.read("k", fetch) == 7
