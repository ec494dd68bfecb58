"""The per-host release as an ordered list of steps, and the steps that undo a partial one.

Every step is check-then-act and safe to repeat, so a flow resumes by re-running the step that was
in progress when the controller died. Undo is a flow too: :func:`undo_steps` reads which steps a host
has begun and returns what puts it back on its previous version and into traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Step(StrEnum):
    PRECHECK = "precheck"  # service healthy before we touch it?
    STAGE = "stage"  # package downloaded, sha256 verified, unpacked into releases/<version>
    MUTE = "mute"  # alerts silenced until a fixed end time
    TAKE_OUT = "take_out"  # out of every registry and load balancer, verified
    QUIET = "quiet"  # registry propagation + drain until in-flight reaches 0 (bounded)
    STOP = "stop"
    SWITCH = "switch"  # `current` -> releases/<version>
    START = "start"
    HEALTH = "health"  # process + app checks pass
    PUT_BACK = "put_back"  # back in load balancers and registries, verified
    UNMUTE = "unmute"


RELEASE_FLOW: tuple[Step, ...] = tuple(Step)
"""A normal release of one host."""

ROLLBACK_FLOW: tuple[Step, ...] = RELEASE_FLOW
"""Rolling a host back: the same graceful path. Its pre-check reads what the host runs (the one source of
what to undo) but does not require it to be healthy: a host on a bad version is expected to be unhealthy."""

RESTART_STEPS = frozenset({Step.STOP, Step.SWITCH, Step.START, Step.HEALTH})
"""Steps after which the app on the host may no longer be the old version, running."""

UNDO_OF: dict[Step, str] = {
    Step.MUTE: "unmute",
    Step.TAKE_OUT: "put back into every load balancer and registry",
    Step.STOP: "start the previous version again (stop, switch back, start, health, put back, unmute)",
}
"""Steps that leave a host in a state that must not last; their undo is journaled before they run."""

UNDO_ORDER: tuple[Step, ...] = (Step.STOP, Step.SWITCH, Step.START, Step.HEALTH, Step.PUT_BACK, Step.UNMUTE)


def undo_steps(begun: Iterable[Step], *, has_previous: bool) -> tuple[Step, ...]:
    """Steps that undo a partly released host, given every step it has begun (done or in progress).

    ========================================  ===========================================
    begun (latest)                            undo
    ========================================  ===========================================
    nothing, precheck, stage                  ()  (a staged release dir is harmless)
    mute                                      (unmute)
    take_out, quiet                           (put_back, unmute)
    stop .. health, with a previous version   (stop, switch, start, health, put_back, unmute)
    put_back, unmute (maybe back in traffic)  (take_out, quiet, stop, switch, start, health, put_back, unmute)
    stop .. unmute, first install             (stop, unmute)  host stays out of traffic
    take_out, quiet, first install            (unmute)  it never served: nothing to put back
    ========================================  ===========================================
    """
    begun = set(begun)
    if begun & {Step.PUT_BACK, Step.UNMUTE} and has_previous:
        return (Step.TAKE_OUT, Step.QUIET, *UNDO_ORDER)  # it may be taking traffic: out before it stops
    if begun & (RESTART_STEPS | {Step.PUT_BACK, Step.UNMUTE}):
        return UNDO_ORDER if has_previous else (Step.STOP, Step.UNMUTE)
    if begun & {Step.TAKE_OUT, Step.QUIET} and not has_previous:
        return (Step.UNMUTE,)
    if begun & {Step.TAKE_OUT, Step.QUIET}:
        return (Step.PUT_BACK, Step.UNMUTE)
    if Step.MUTE in begun:
        return (Step.UNMUTE,)
    return ()


def remaining(flow: tuple[Step, ...], done: Iterable[Step]) -> tuple[Step, ...]:
    """Steps of ``flow`` still to run, in order; the first is re-run if it was in progress."""
    finished = set(done)
    return tuple(s for s in flow if s not in finished)


class OnStepFailure(StrEnum):
    """What the engine does with a host whose step failed."""

    SKIP_OR_FAIL = "skip_or_fail"  # nothing was touched: skipped (unhealthy, by policy) or failed
    REVERT = "revert"  # undo what was begun (:func:`undo_steps`), back to the previous version
    ATTENTION = "attention"  # healthy on the new version, but not back in every backend: leave it, say which
    WARN = "warn"  # done; the failure is recorded (a silence that was not lifted ends by itself)


def on_step_failure(step: Step) -> OnStepFailure:
    """The decision table for a failed step.

    ====================  ================  ==============================================================
    step                  action            why
    ====================  ================  ==============================================================
    precheck              skip_or_fail      nothing was touched yet
    stage .. health       revert            the new version is not serving; the previous one goes back
    put_back              attention         the host is healthy on the new version and back in every
                                            backend that worked: reverting would take it out of those too
    unmute                warn              the host serves; the silence lapses at its fixed end time
    ====================  ================  ==============================================================
    """
    if step is Step.PRECHECK:
        return OnStepFailure.SKIP_OR_FAIL
    if step is Step.PUT_BACK:
        return OnStepFailure.ATTENTION
    if step is Step.UNMUTE:
        return OnStepFailure.WARN
    return OnStepFailure.REVERT
