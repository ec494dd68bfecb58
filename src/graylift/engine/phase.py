"""What a phase of a release's drive (canary, analysis, pre-stage, blue-green) uses of the drive.

:class:`graylift.engine.loop._Drive` is one controller driving one release; each phase is a mixin of it in its
own module. This declares, once, the drive's collaborators and the drive's own methods a phase calls (they
are defined in ``loop.py``), so a phase module says only what the phase does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graylift.core.model import Strategy
    from graylift.core.plan import Batch
    from graylift.core.state import ReleaseState
    from graylift.engine.hosts import HostRunner
    from graylift.engine.lease import Lease
    from graylift.ports import Clock, Fleet
    from graylift.store import HostRunRecord, ReleaseRecord, Store


class PhaseBase:
    store: Store
    fleet: Fleet
    clock: Clock
    strategy: Strategy
    hosts: HostRunner
    lease: Lease

    if TYPE_CHECKING:
        def move(self, rec: ReleaseRecord, state: ReleaseState, message: str | None = None, **fields: Any
                 ) -> ReleaseRecord: ...

        def advance(self, rec: ReleaseRecord, pause: float) -> None: ...

        def out_of_service(self, rec: ReleaseRecord, runs: Sequence[HostRunRecord] | None = None) -> set[str]: ...

        def finish_success(self, rec: ReleaseRecord) -> None: ...

        def finish_rolled_back(self, rec: ReleaseRecord, rolled: int, message: str) -> None: ...

        async def each(self, hosts: Sequence[str], one: Callable[[ReleaseRecord, str], Awaitable[None]],
                       rec: ReleaseRecord, *, stop_on_request: bool = False) -> None: ...

        async def work_batch(self, rec: ReleaseRecord, batch: Batch, pending: Sequence[str]
                             ) -> tuple[ReleaseRecord, dict[str, HostRunRecord]] | None: ...
