"""Release and host states, with the transitions allowed between them."""

from __future__ import annotations

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


FINISHED = frozenset({ReleaseState.SUCCEEDED, ReleaseState.ROLLED_BACK, ReleaseState.ABORTED, ReleaseState.FAILED})

_S = ReleaseState
RELEASE_TRANSITIONS: dict[ReleaseState, frozenset[ReleaseState]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.ROLLING_BACK, _S.ABORTED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.BAKING, _S.PAUSED, _S.ROLLING_BACK, _S.SUCCEEDED, _S.ABORTED, _S.FAILED}),
    _S.BAKING: frozenset({_S.RUNNING, _S.AWAITING_PROMOTION, _S.PAUSED, _S.ROLLING_BACK, _S.ABORTED}),
    _S.AWAITING_PROMOTION: frozenset({_S.RUNNING, _S.PAUSED, _S.ROLLING_BACK, _S.ABORTED}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.ROLLING_BACK, _S.ABORTED}),
    _S.ROLLING_BACK: frozenset({_S.ROLLED_BACK, _S.PAUSED, _S.FAILED}),
    _S.SUCCEEDED: frozenset(),
    _S.ROLLED_BACK: frozenset(),
    _S.ABORTED: frozenset(),
    _S.FAILED: frozenset(),
}


def check_transition(current: ReleaseState, new: ReleaseState) -> ReleaseState:
    """Return ``new`` if the release may move there from ``current``; else raise StateError saying why."""
    if new == current or new in RELEASE_TRANSITIONS[current]:
        return new
    if current.finished:
        raise StateError(f"the release already {current.value}; start a new release or rollback instead")
    allowed = ", ".join(sorted(s.value for s in RELEASE_TRANSITIONS[current])) or "none"
    raise StateError(f"a release that is {current.value} cannot become {new.value} (allowed: {allowed})")


class HostState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # on the new version, back in traffic
    SKIPPED = "skipped"  # pre-check found it unhealthy or unreachable; not touched
    REVERTING = "reverting"  # undoing a failed or aborted host
    FAILED = "failed"  # new version failed; host put back on its previous version and into traffic
    NEEDS_ATTENTION = "needs_attention"  # the revert failed too: host left out of traffic, see error
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"

    @property
    def counts_as_failure(self) -> bool:
        return self in (HostState.FAILED, HostState.NEEDS_ATTENTION)

    @property
    def settled(self) -> bool:
        return self not in (HostState.PENDING, HostState.RUNNING, HostState.REVERTING, HostState.ROLLING_BACK)
