"""Group commit of finished steps: the hosts of a batch that finish a step in one turn of the event loop are
written in one transaction (:meth:`graylift.store.runs.RunStore.finish_steps`).

Each caller still waits for its own write to be committed before its host acts again, so a step is journaled
done (and the next one begun) before the next one runs, exactly as one transaction per host would have it.
The write runs in a callback scheduled right after the first caller of the turn: no caller waits for a timer,
and the busier the loop (many hosts finishing at once), the more steps share a transaction.
"""

from __future__ import annotations

import asyncio

from graylift.store import Store
from graylift.store.records import HostRunRecord
from graylift.store.runs import FinishStep


class StepWrites:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[FinishStep, asyncio.Future[HostRunRecord]]] = []

    async def finish(self, finish: FinishStep) -> HostRunRecord:
        """The host run after ``finish`` is committed (with the other hosts' finishes of this turn)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[HostRunRecord] = loop.create_future()
        self._pending.append((finish, done))
        if len(self._pending) == 1:
            loop.call_soon(self._write)
        return await done

    def _write(self) -> None:
        pending, self._pending = self._pending, []
        try:
            runs = self.store.finish_steps([finish for finish, _ in pending])
        except BaseException as exc:  # every waiter gets it (a lost lease, a store error), none waits forever
            for _, done in pending:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, done), run in zip(pending, runs, strict=True):
            if not done.done():  # its caller was cancelled: the step is written all the same
                done.set_result(run)
