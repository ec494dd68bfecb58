"""Release and host states, the transitions allowed between them, and which request applies when.

A release moves *forward* (the new version goes out) until something sends it *back* (a rollback: every
host that got the new version returns to the one it had). Once a release has started going back it can
only go on going back, or be aborted: resume and retry continue the rollback, never the forward release.

    ==================  =========================================================================
    request             allowed in (direction)            -> effect
    ==================  =========================================================================
    promote             baking, awaiting_promotion (fwd)  -> queued for the driver
    pause               pending, running, baking,
                        awaiting_promotion (fwd)          -> queued; the driver stops at a safe point
    abort               any unfinished state              -> queued; the driver settles in-flight hosts
    rollback            any unfinished state (fwd),
                        not a rollback release            -> rolling_back (now, if paused) or queued
    resume              paused                            -> running (fwd) / rolling_back (back)
    retry               paused                            -> running (fwd) / rolling_back (back), with
                                                             the failed hosts queued again
    ==================  =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from graylift.errors import StateError


class ReleaseState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    BAKING = "baking"  # canary done, watching it for the bake period
    AWAITING_PROMOTION = "awaiting_promotion"  # bake passed, promote is manual
    PAUSED = "paused"  # stopped at a safe point; `resume`, `retry`, `rollback` or `abort`
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @property
    def needs_worker(self) -> bool:
        """States in which a controller process must be driving the release."""
        return self in (ReleaseState.PENDING, ReleaseState.RUNNING, ReleaseState.BAKING,
                        ReleaseState.AWAITING_PROMOTION, ReleaseState.ROLLING_BACK)


class ReleaseKind(StrEnum):
    RELEASE = "release"  # a new version to the fleet
    ROLLBACK = "rollback"  # an older, good version back to the fleet (`graylift rollback` after a release)


class Direction(StrEnum):
    FORWARD = "forward"
    BACK = "back"  # rolling back: every host that got the new version returns to its own previous one


class Request(StrEnum):
    """What a person (or pipeline) asks of a release; queued ones are read by the driver at a safe point."""

    PROMOTE = "promote"
    PAUSE = "pause"
    ABORT = "abort"
    ROLLBACK = "rollback"
    RESUME = "resume"
    RETRY = "retry"


QUEUED = frozenset({Request.PROMOTE, Request.PAUSE, Request.ABORT, Request.ROLLBACK})
"""Requests stored on the release for its driver; resume and retry act at once (the release is paused)."""


FINISHED = frozenset({ReleaseState.SUCCEEDED, ReleaseState.ROLLED_BACK, ReleaseState.ABORTED, ReleaseState.FAILED})

_S = ReleaseState
RELEASE_TRANSITIONS: dict[ReleaseState, frozenset[ReleaseState]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.PAUSED, _S.ROLLING_BACK, _S.ABORTED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.BAKING, _S.PAUSED, _S.ROLLING_BACK, _S.SUCCEEDED, _S.ABORTED, _S.FAILED}),
    _S.BAKING: frozenset({_S.RUNNING, _S.AWAITING_PROMOTION, _S.PAUSED, _S.ROLLING_BACK, _S.ABORTED}),
    _S.AWAITING_PROMOTION: frozenset({_S.RUNNING, _S.PAUSED, _S.ROLLING_BACK, _S.ABORTED}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.ROLLING_BACK, _S.ABORTED}),
    _S.ROLLING_BACK: frozenset({_S.ROLLED_BACK, _S.PAUSED, _S.ABORTED, _S.FAILED}),
    _S.SUCCEEDED: frozenset(),
    _S.ROLLED_BACK: frozenset(),
    _S.ABORTED: frozenset(),
    _S.FAILED: frozenset(),
}

FORWARD_ONLY = frozenset({_S.RUNNING, _S.BAKING, _S.AWAITING_PROMOTION, _S.SUCCEEDED})
"""States a release that has started going back never enters again."""


def check_transition(current: ReleaseState, new: ReleaseState,
                     direction: Direction = Direction.FORWARD) -> ReleaseState:
    """Return ``new`` if the release may move there from ``current``; else raise StateError saying why."""
    if direction is Direction.BACK and new in FORWARD_ONLY:
        raise StateError(f"the release is rolling back; it cannot become {new.value} "
                         "(it goes on rolling back, or is aborted)")
    if new == current or new in RELEASE_TRANSITIONS[current]:
        return new
    if current.finished:
        raise StateError(f"the release already {current.value}; start a new release or rollback instead")
    allowed = ", ".join(sorted(s.value for s in RELEASE_TRANSITIONS[current])) or "none"
    raise StateError(f"a release that is {current.value} cannot become {new.value} (allowed: {allowed})")


def running_state(direction: Direction) -> ReleaseState:
    """The state a paused release continues in: forward releases run, rollbacks roll back."""
    return ReleaseState.ROLLING_BACK if direction is Direction.BACK else ReleaseState.RUNNING


@dataclass(frozen=True)
class RequestOutcome:
    """What the service does with a request: queue it for the driver, or move the release at once."""

    queue: bool  # store it on the release; the driver acts at its next safe point
    move_to: ReleaseState | None = None  # move now (the release is paused: no driver is acting)


def decide_request(request: Request, *, state: ReleaseState, direction: Direction, kind: ReleaseKind,
                   release_id: int) -> RequestOutcome:
    """Whether ``request`` applies to a release in ``state``, and how (the table in the module docstring).

    Raises StateError with what to do instead.
    """
    n = f"#{release_id}"
    if state.finished:
        raise StateError(f"release {n} already {state.value}; nothing to {request.value}")
    back = direction is Direction.BACK
    if request is Request.PROMOTE:
        if state in (_S.BAKING, _S.AWAITING_PROMOTION):
            return RequestOutcome(queue=True)
        raise StateError(f"release {n} is {state.value}: only a baking or baked canary can be promoted")
    if request is Request.PAUSE:
        if back:
            raise StateError(f"release {n} is rolling back and is not paused halfway; "
                             f"`graylift abort {release_id}` stops it at the next safe point")
        if state is _S.PAUSED:
            raise StateError(f"release {n} is already paused; `graylift resume {release_id}` goes on")
        return RequestOutcome(queue=True)
    if request is Request.ABORT:
        return RequestOutcome(queue=True)
    if request is Request.ROLLBACK:
        if kind is ReleaseKind.ROLLBACK:
            raise StateError(f"release {n} is itself a rollback; `graylift abort {release_id}` stops it, "
                             "then roll back to another version with `graylift rollback APP --env ENV --to V`")
        if back:
            raise StateError(f"release {n} is already rolling back")
        if state is _S.PAUSED:
            return RequestOutcome(queue=False, move_to=_S.ROLLING_BACK)
        return RequestOutcome(queue=True)
    # resume and retry continue a paused release in its own direction
    if state is not _S.PAUSED:
        raise StateError(f"release {n} is {state.value}, not paused; `graylift status {release_id}` shows it")
    return RequestOutcome(queue=False, move_to=running_state(direction))


class HostState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # on the new version, back in traffic
    SKIPPED = "skipped"  # pre-check found it unhealthy; not touched
    REVERTING = "reverting"  # undoing a failed or aborted host
    FAILED = "failed"  # new version failed; host put back on its previous version and into traffic
    NEEDS_ATTENTION = "needs_attention"  # could not be put back completely: see its error and backends
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"

    @property
    def counts_as_failure(self) -> bool:
        return self in (HostState.FAILED, HostState.NEEDS_ATTENTION)

    @property
    def settled(self) -> bool:
        return self not in (HostState.PENDING, HostState.RUNNING, HostState.REVERTING, HostState.ROLLING_BACK)

    @property
    def in_flight(self) -> bool:
        return self in (HostState.RUNNING, HostState.REVERTING, HostState.ROLLING_BACK)

    @property
    def not_serving(self) -> bool:
        """Out of service, or possibly so: counted against the 50% cap of every pass."""
        return self in (HostState.SKIPPED, HostState.FAILED, HostState.NEEDS_ATTENTION, HostState.RUNNING,
                        HostState.REVERTING, HostState.ROLLING_BACK)


_H = HostState
HOST_TRANSITIONS: dict[HostState, frozenset[HostState]] = {
    _H.PENDING: frozenset({_H.RUNNING, _H.NEEDS_ATTENTION}),  # needs attention: a canary baseline not back
    _H.RUNNING: frozenset({_H.DONE, _H.SKIPPED, _H.FAILED, _H.REVERTING, _H.NEEDS_ATTENTION}),
    _H.REVERTING: frozenset({_H.FAILED, _H.NEEDS_ATTENTION}),
    _H.DONE: frozenset({_H.ROLLING_BACK, _H.ROLLED_BACK}),  # queued by a back pass; a blue-green switch back
    _H.SKIPPED: frozenset({_H.PENDING}),  # a retry
    _H.FAILED: frozenset({_H.PENDING, _H.ROLLING_BACK}),
    _H.NEEDS_ATTENTION: frozenset({_H.PENDING, _H.ROLLING_BACK}),
    _H.ROLLING_BACK: frozenset({_H.ROLLED_BACK, _H.REVERTING, _H.NEEDS_ATTENTION}),
    _H.ROLLED_BACK: frozenset(),
}
"""How one host's run moves within a release: forward (pending -> running -> done), reverted (running ->
reverting -> failed), back (done -> rolling_back -> rolled_back; blue-green: done -> rolled_back, switched out
of traffic with no pass), or left needing attention (also a pending host the canary analysis restarted as its
baseline and could not bring back); retries start over."""


def check_host_transition(host: str, current: HostState, new: HostState) -> HostState:
    """Return ``new`` if the host's run may move there from ``current``; else StateError saying why."""
    if new == current or new in HOST_TRANSITIONS[current]:
        return new
    allowed = ", ".join(sorted(s.value for s in HOST_TRANSITIONS[current])) or "none"
    raise StateError(f"host {host} is {current.value} in this release and cannot become {new.value} "
                     f"(allowed: {allowed})")
