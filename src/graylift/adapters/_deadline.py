"""A command's time limit counted on the controller's running time.

``asyncio.wait_for`` counts wall time. A controller stopped (SIGSTOP, starved of CPU, a paused VM) while a
command runs on a host wakes with the command's answer in its socket and its timer past due; the timer runs
first and the answer is called a timeout: a healthy host read as "timed out", skipped or reverted. Seen on
CI: a controller frozen 11 s while its reads ahead ran skipped both hosts of the next batch as unhealthy
("timed out after 5s"), and the release paused at the 50% cap (tests/engine/test_starved_controller.py).

:func:`within` moves a deadline that passed while this process did not run (its timer went off late) on by
that time, so what arrived meanwhile is read. A host that is really slow still times out: its timer goes
off on time. On the host, ``timeout`` bounds the command anyway (the SSH transport wraps every one in it).

Every limit the controller puts on a host or backend call goes through it: SSH (connect, run, upload), local
commands, the command silencer, HAProxy's runtime API, ZooKeeper. Seen failing without it (a frozen event
loop, tests.adapters.conftest.freeze_soon): an SSH command and connection, a local command, the command
silencer; not seen failing for HAProxy, ZooKeeper or httpx (asyncio or anyio read their answers first there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

STALLED_SECONDS = 1.0
"""A timer that goes off this much later than due says the process did not run: its timeout is not the
host's. (Under heavy load timers run late by tens to hundreds of milliseconds.)"""


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """``awaitable``'s result, or TimeoutError (``awaitable`` cancelled) when it takes longer than ``seconds``
    of the time this process ran. Cancelling the caller cancels ``awaitable``."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(awaitable)
    deadline = loop.time() + seconds
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
            if done:
                return task.result()
            late = loop.time() - deadline
            if late <= STALLED_SECONDS:
                raise TimeoutError
            deadline = loop.time() + late  # the time it did not run past the deadline, given back
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
