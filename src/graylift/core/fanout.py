"""Pre-staging at scale: who fetches the package from whom, so staging time grows with log N, not N.

The first host(s) (``seeds``: as many as the repository may serve at once for the package's size,
:func:`repository_seeds`) download from the artifact repository; every host that has the verified
package then serves it to at most ``per_source`` others at a time. With ``per_source`` 1 the staged hosts
double each round, so N hosts are staged in ``1 + ceil(log2 N)`` rounds (one download from the repository,
then doubling) instead of N downloads from one place.

:class:`FanOut` is the schedule as a state machine: :meth:`FanOut.assign` hands out the transfers that may
start now, :meth:`FanOut.finished` records how one ended. The engine runs the transfers (a new one starts as
soon as a slot frees, without waiting for a whole round); :func:`rounds` runs the same machine in lock-step
rounds, which is how the tests and the docs count.

Worked example, 8 hosts, one seed, each staged host serving one peer at a time::

    >>> [[(r, s or "repo") for r, s in rnd] for rnd in rounds([f"h{i}" for i in range(1, 9)])]
    ... # doctest: +NORMALIZE_WHITESPACE
    [[('h1', 'repo')], [('h2', 'h1')], [('h3', 'h1'), ('h4', 'h2')],
     [('h5', 'h1'), ('h6', 'h2'), ('h7', 'h3'), ('h8', 'h4')]]

A transfer from a peer that fails (its server gone, a sha256 that does not match) puts the receiver back at
the front of the queue; it never asks that peer again, and the peer serves nobody else (``blame_source``).
With no other staged peer left for it, the receiver falls back to the repository. A receiver that fails
``max_attempts`` times, or fails from the repository, is given up: its own stage step tries again later.

Disk space is checked before a host is queued (:func:`disk_refusal`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

UNPACK_FACTOR = 3.0
"""Free space a host needs, as a multiple of the package's size: the archive (kept in the release dir, where
peers are served from) plus what it unpacks to, with room to spare."""

Assignment = tuple[str, str | None]
"""(receiver, source): ``source`` None means the artifact repository."""


def rounds_needed(hosts: int, *, seeds: int = 1, per_source: int = 1) -> int:
    """Rounds of lock-step fan-out to stage ``hosts`` hosts: the repository's seeds first, then each staged
    host adds ``per_source`` new ones per round, so the count grows by a factor ``1 + per_source``.

    >>> rounds_needed(200), rounds_needed(8), rounds_needed(1), rounds_needed(0), rounds_needed(200, per_source=2)
    (9, 4, 1, 0, 6)
    """
    if hosts <= 0:
        return 0
    staged, count = min(seeds, hosts), 1
    while staged < hosts:
        staged += staged * per_source
        count += 1
    return count


def repository_seeds(hosts: int, *, package_bytes: int | None, repository_share: int) -> int:
    """How many hosts download from the artifact repository at once: as many as ``repository_share`` bytes in
    flight allow (at least 1, at most ``hosts``); 1 when the size is unknown. A small package thus reaches
    every host in one round, straight from the repository, where a fan-out would spend ``1 + log2 N`` rounds
    of per-transfer set-up on it; a large one still leaves the repository once and fans out host to host.

    >>> [repository_seeds(50, package_bytes=size, repository_share=64 * 2**20)
    ...  for size in (40 * 2**10, 20 * 2**20, 100 * 2**20, None)]
    [50, 3, 1, 1]
    """
    if package_bytes is None or hosts <= 0:
        return 1
    return max(1, min(hosts, repository_share // max(package_bytes, 1)))


def needed_bytes(package_bytes: int | None, factor: float = UNPACK_FACTOR) -> int:
    """The free bytes a host needs to pre-stage a package (0 when its size is unknown).

    >>> needed_bytes(100), needed_bytes(None)
    (300, 0)
    """
    return 0 if package_bytes is None else math.ceil(package_bytes * factor)


def disk_refusal(host: str, *, free_bytes: int, package_bytes: int | None,
                 factor: float = UNPACK_FACTOR) -> str | None:
    """None when ``host`` has room for the package, else the one-line reason it is not pre-staged.

    >>> disk_refusal("web-01", free_bytes=50 * 2**20, package_bytes=100 * 2**20)[:72]
    'web-01: 50 MiB free in the deploy dir, pre-staging needs 300 MiB (3 x th'
    >>> disk_refusal("web-01", free_bytes=1 << 40, package_bytes=None) is None
    True
    """
    if package_bytes is None:
        return None  # size unknown: the stage itself fails cleanly on a full disk
    needed = needed_bytes(package_bytes, factor)
    if free_bytes >= needed:
        return None
    return (f"{host}: {_mib(free_bytes)} free in the deploy dir, pre-staging needs {_mib(needed)} "
            f"({factor:g} x the {_mib(package_bytes)} package); free space, or its stage step will fail the same way")


def peer_url(address: str, port: int, token: str, filename: str) -> str:
    """Where a receiver fetches the package from a peer's server.

    >>> peer_url("fd00::7", 40001, "t0k", "app-1.0.tar.gz")
    'http://[fd00::7]:40001/t0k/app-1.0.tar.gz'
    """
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/{token}/{filename}"


def _mib(n: int) -> str:
    """A size for a message: ``1.5 GiB``, ``300 MiB``, ``12 KiB``, ``300 B``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if unit == "GiB" else f"{n / scale:.0f} {unit}"
    return f"{n} B"


@dataclass
class FanOut:
    """The fan-out schedule of one pre-stage phase (pure: no I/O, no clock).

    ``waiting`` hosts need the package; ``staged`` hosts already have it (verified) and may serve it.
    """

    waiting: list[str]
    staged: list[str] = field(default_factory=list)
    seeds: int = 1
    per_source: int = 1
    max_attempts: int = 3
    busy: dict[str, int] = field(default_factory=dict)  # source -> transfers it serves now
    in_flight: dict[str, str | None] = field(default_factory=dict)  # receiver -> source
    tried: dict[str, set[str]] = field(default_factory=dict)  # receiver -> peers that failed it
    attempts: dict[str, int] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)  # peers that failed a transfer: they serve nobody else
    given_up: list[str] = field(default_factory=list)
    served: dict[str, str | None] = field(default_factory=dict)  # receiver -> where it got the package

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.per_source < 1 or self.max_attempts < 1:
            raise ValueError("seeds, per_source and max_attempts must be at least 1")
        have = set(self.staged)
        self.waiting = [h for h in dict.fromkeys(self.waiting) if h not in have]
        # the repository may serve every receiver at once (a small package; one seed is also what an unknown size
        # gives): each gets it from there, also when fewer run at once (``assign``'s limit), and no peer's
        # server is started for it
        self.repository_serves_all = 1 < len(self.waiting) <= self.seeds

    @property
    def done(self) -> bool:
        return not self.waiting and not self.in_flight

    def assign(self, limit: int | None = None) -> list[Assignment]:
        """Transfers to start now (at most ``limit`` in flight in all), in queue order; each is in flight
        until :meth:`finished`. A receiver gets the staged peer with a free slot that serves fewest now
        (earliest staged first) and that has not failed it; the repository serves ``seeds`` at a time, and
        only hosts that no staged peer can serve (none staged yet, or every one tried), unless it may serve
        every receiver at once (``repository_serves_all``: then all of them)."""
        started: list[Assignment] = []
        free = sorted((h for h in self.staged if h not in self.bad and self.busy.get(h, 0) < self.per_source),
                      key=lambda h: self.busy.get(h, 0))  # stable: earliest staged first among equals
        usable = [h for h in self.staged if h not in self.bad]
        from_repository = sum(1 for s in self.in_flight.values() if s is None)
        for receiver in list(self.waiting):
            if limit is not None and len(self.in_flight) >= limit:
                break
            if not free and from_repository >= self.seeds:
                break  # every peer busy and the repository's slots taken: nothing can start now
            tried = self.tried.get(receiver, set())
            source = None if self.repository_serves_all else next((h for h in free if h not in tried), None)
            if source is None:
                if not self.repository_serves_all and any(h not in tried for h in usable):
                    continue  # a peer it has not tried will have a free slot soon
                if from_repository >= self.seeds:
                    continue
                from_repository += 1
            else:
                self.busy[source] = self.busy.get(source, 0) + 1
                free.remove(source)
                if self.busy[source] < self.per_source:
                    free.append(source)
            self.waiting.remove(receiver)
            self.in_flight[receiver] = source
            started.append((receiver, source))
        return started

    def finished(self, receiver: str, ok: bool, *, blame_source: bool = True) -> None:
        """Record how ``receiver``'s transfer ended. A failed one goes back to the front of the queue (or is
        given up); with ``blame_source`` its peer is not used again."""
        source = self.in_flight.pop(receiver)
        if source is not None:
            self.busy[source] -= 1
        if ok:
            self.staged.append(receiver)
            self.served[receiver] = source
            return
        self.attempts[receiver] = self.attempts.get(receiver, 0) + 1
        if source is not None:
            self.tried.setdefault(receiver, set()).add(source)
            if blame_source:
                self.bad.add(source)
        if source is None or self.attempts[receiver] >= self.max_attempts:
            self.given_up.append(receiver)
        else:
            self.waiting.insert(0, receiver)


def rounds(hosts: Sequence[str], *, staged: Iterable[str] = (), seeds: int = 1, per_source: int = 1,
           fails: Iterable[Assignment] = ()) -> list[list[Assignment]]:
    """The schedule in lock-step rounds: each round's transfers all start, then all finish. ``fails`` are
    (receiver, source) transfers that fail (source None: the repository), for tests and docs."""
    failing = set(fails)
    machine = FanOut(list(hosts), list(staged), seeds=seeds, per_source=per_source)
    out: list[list[Assignment]] = []
    while not machine.done:
        now = machine.assign()
        if not now:
            break
        out.append(now)
        for receiver, source in now:
            machine.finished(receiver, (receiver, source) not in failing)
    return out


__all__ = ["UNPACK_FACTOR", "Assignment", "FanOut", "disk_refusal", "needed_bytes", "peer_url", "repository_seeds",
           "rounds", "rounds_needed"]
