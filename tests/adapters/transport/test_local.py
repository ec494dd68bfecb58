"""LocalTransport (the controller's own commands, and the folder hosts of the tests and the simulation)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import warnings

from graylift.adapters.transport.local import LocalTransport
from graylift.core.model import Host
from tests.adapters.conftest import parent_of


def test_a_cancelled_command_is_killed_and_reaped_before_the_cancellation_returns() -> None:
    """A caller that gives up on a command (a pre-check whose survey failed while its health check ran, a lost
    lease cancelling a batch) leaves nothing behind, even when its event loop ends right after: the process is
    gone, and no subprocess transport is left to be collected while it still counts as running."""
    before = _children()

    async def give_up() -> None:
        running = asyncio.ensure_future(LocalTransport(Host("controller", "127.0.0.1")).run("exec sleep 30",
                                                                                             timeout=60))
        await asyncio.sleep(0.3)
        assert len(_children() - before) == 1  # the command runs
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        asyncio.run(give_up())  # the loop ends at once: nothing pending may still be owed to the process
        gc.collect()
    assert [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)] == []
    assert _children() - before == set()


def _children() -> set[int]:
    return {int(pid) for pid in os.listdir("/proc") if pid.isdigit() and parent_of(int(pid)) == os.getpid()}
