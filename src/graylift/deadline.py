"""A command's or request's time limit counted on the controller's running time.

``asyncio.wait_for`` counts wall time. A controller stopped (SIGSTOP, starved of CPU, a paused VM) while a
command runs on a host wakes with the command's answer in its socket and its timer past due; the timer runs
first and the answer is called a timeout: a healthy host read as "timed out", skipped or reverted. Seen on
CI: a controller frozen 11 s while its reads ahead ran skipped both hosts of the next batch as unhealthy
("timed out after 5s"), and the release paused at the 50% cap (tests/engine/test_starved_controller.py).

:func:`within` moves a deadline that passed while this process did not run (its timer went off late) on by
that time, so what arrived meanwhile is read; and when a freeze ends just at the deadline (the timer not late
enough to tell), what is already in the sockets is taken up before a timeout is called. A host that is really
slow still times out: its timer goes off on time. On the host, ``timeout`` bounds the command anyway (the SSH
transport wraps every one in it).

Every limit the controller puts on a host or backend call goes through it: SSH (connect, run, upload), local
commands, the command silencer, HAProxy's runtime API, ZooKeeper, a whole HTTP request (:func:`bounded`), a
webhook delivery.
Seen failing without it (a frozen event loop, tests.adapters.conftest.freeze_soon): an SSH command and
connection, a local command, the command silencer; and without the taking up, a local command and an HTTP
request whose answer came during a freeze that ended at the deadline (tests/adapters/transport/test_deadline.py).
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
                if await _settled(task):  # an answer that came while the process did not run is read first
                    return task.result()
                raise TimeoutError
            deadline = loop.time() + late  # the time it did not run past the deadline, given back
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


SETTLE_TURNS = 20
"""Turns of the event loop a task gets, past its deadline, to take up what is already in its sockets."""


async def _settled(task: asyncio.Future[T]) -> bool:
    """Whether ``task`` finishes within SETTLE_TURNS turns of the loop, none of them waiting on anything.

    A process that stopped running until just before a deadline (a freeze of 1.5 s ending at a 1.5 s
    deadline) wakes with the answer in its socket and its timer due: the loop reads the socket first, but
    the task that wants the answer runs after the timer, so the timer alone would call a timeout. A host
    that really did not answer leaves the task waiting on its socket, and these turns cost no time."""
    for _ in range(SETTLE_TURNS):
        if task.done():
            return True
        await asyncio.sleep(0)
    return task.done()


def whole_request(timeout: float) -> float:
    """The seconds a whole request may take when each connect, read and write may take ``timeout``: a little
    more, so that a server silent for ``timeout`` fails as httpx names it (ReadTimeout, ConnectTimeout)."""
    return timeout + 1.0


async def bounded(request: Awaitable[T], timeout: float) -> T:
    """``request`` (an httpx call with ``timeout``), over within :func:`whole_request` seconds of the
    controller's running time.

    httpx's timeouts bound each connect, read and write, not the request: a server (or a proxy) that sends a
    byte now and then held a call, and the release step waiting on it, without end. Raises TimeoutError,
    which ``graylift.adapters._http.translated`` given the same ``timeout`` turns into the backend's error."""
    return await within(request, whole_request(timeout))
