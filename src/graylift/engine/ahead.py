"""The pre-check's reads taken before a host's turn (docs/safety.md, "the pre-check read ahead").

Two sources: the reads the release's preflight took in this process (``graylift release --wait``: :meth:`seed`),
and the next batch's reads, started once the first host of this batch is out of traffic (:meth:`arm`, then
:meth:`first_out`), so they are done when the next batch begins and at most its restart old. A read older than
``strategy.precheck_ahead_seconds`` is not used (0: off). Reads are read-only (the survey and the health probes),
journaled with the pre-check that uses one, and lost with this controller (its successor reads again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from graylift.ports import Clock
from graylift.runtime import HostRead
from graylift.store import ReleaseRecord

ReadHost = Callable[[ReleaseRecord, str], Awaitable[HostRead | None]]
"""Takes one host's read for a release (None: not now, e.g. the host has begun), without raising."""


class ReadsAhead:
    """Reads of hosts, taken or on their way, by host name. ``limit``: how old (seconds) a read may be when used;
    ``parallel``: reads on their way at once; ``read`` takes one."""

    def __init__(self, clock: Clock, *, limit: float, parallel: int, read: ReadHost) -> None:
        self.clock, self.limit, self.parallel, self._read = clock, limit, max(1, parallel), read
        self._held: dict[str, asyncio.Future[HostRead | None]] = {}
        self._armed: tuple[ReleaseRecord, tuple[str, ...]] | None = None

    def __bool__(self) -> bool:
        return bool(self._held)

    def seed(self, reads: Mapping[str, HostRead]) -> None:
        """Reads this release's preflight took, in this process: a host whose turn comes while its read is young
        enough is not read again by its pre-check."""
        if self.limit > 0:
            for host, read in reads.items():
                self._held[host] = _done(read)

    def note_staged(self, host: str, directory: str, sha256: str | None, version: str) -> None:
        """The pre-stage put ``releases/<directory>`` on ``host``: a read taken before says so too."""
        held = self._held.get(host)
        if held is not None and held.done() and not held.cancelled() and (read := held.result()) is not None:
            self._held[host] = _done(replace(read, found=read.found.with_staged(directory, sha256, version)))

    def arm(self, rec: ReleaseRecord, hosts: Sequence[str]) -> None:
        """Read ``hosts`` (the next batch) once the first host of this batch is out of traffic (:meth:`first_out`).
        Cleared by :meth:`disarm` when the batch ends."""
        self._armed = (rec, tuple(hosts)) if hosts and self.limit > 0 else None

    def disarm(self) -> None:
        self._armed = None

    def first_out(self) -> None:
        """A host of this batch is out of traffic: the armed reads start (once)."""
        if self._armed is not None:
            (rec, hosts), self._armed = self._armed, None
            self._start(rec, hosts)

    def _start(self, rec: ReleaseRecord, hosts: Sequence[str]) -> None:
        """Start the reads of ``hosts`` that have none young enough (half the limit: it is used a batch later)."""
        gate = asyncio.Semaphore(self.parallel)

        async def read(host: str) -> HostRead | None:
            async with gate:
                return await self._read(rec, host)

        for host in hosts:
            if self._age(host, at_most=self.limit / 2) is None:
                self._held[host] = asyncio.ensure_future(read(host))

    def _age(self, host: str, *, at_most: float) -> float | None:
        """Seconds since ``host``'s read was taken (0 while on its way), None without one at most that old."""
        held = self._held.get(host)
        if held is None or held.cancelled():
            return None
        if not held.done():
            return 0.0
        if held.exception() is not None or (read := held.result()) is None:
            return None
        age = (self.clock.now() - read.at).total_seconds()
        return age if age <= at_most else None

    async def take(self, host: str) -> HostRead | None:
        """The read of ``host`` taken before its turn (waited for, if still on its way), when young enough."""
        held = self._held.get(host)
        if held is None:
            return None
        await asyncio.wait({held})
        fresh = self._age(host, at_most=self.limit) is not None
        return self._held.pop(host).result() if fresh else None

    async def close(self) -> None:
        """Reads that no pre-check took (the release paused, or this controller stops) are dropped."""
        held, self._held, self._armed = [f for f in self._held.values() if not f.done()], {}, None
        for future in held:
            future.cancel()
        await asyncio.gather(*held, return_exceptions=True)


def _done(read: HostRead) -> asyncio.Future[HostRead | None]:
    future: asyncio.Future[HostRead | None] = asyncio.get_running_loop().create_future()
    future.set_result(read)
    return future
