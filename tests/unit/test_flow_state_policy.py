"""Per-host flows, undo, state transitions and policies, from tables of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from graylift.core.flow import RELEASE_FLOW, ROLLBACK_FLOW, OnStepFailure, Step, on_step_failure, remaining, undo_steps
from graylift.core.model import OnFailure, PromoteMode, Strategy
from graylift.core.policy import BakeOutcome, Verdict, after_batch, bake_outcome, lease_is_stale
from graylift.core.state import Direction, ReleaseKind, ReleaseState, Request, check_transition, decide_request
from graylift.errors import StateError

S = Step
FULL_UNDO = (S.STOP, S.SWITCH, S.START, S.HEALTH, S.PUT_BACK, S.UNMUTE)


def test_release_flow_order_is_the_graceful_one() -> None:
    assert RELEASE_FLOW == (S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT, S.QUIET, S.STOP, S.SWITCH, S.START,
                            S.HEALTH, S.PUT_BACK, S.UNMUTE)
    assert ROLLBACK_FLOW == RELEASE_FLOW  # its pre-check reads what the host runs, without requiring health


@pytest.mark.parametrize(("step", "action"), [
    (S.PRECHECK, OnStepFailure.SKIP_OR_FAIL),
    (S.STAGE, OnStepFailure.REVERT),
    (S.MUTE, OnStepFailure.REVERT),
    (S.TAKE_OUT, OnStepFailure.REVERT),
    (S.STOP, OnStepFailure.REVERT),
    (S.HEALTH, OnStepFailure.REVERT),
    (S.PUT_BACK, OnStepFailure.ATTENTION),  # healthy and in the backends that worked: reverting would undo those
    (S.UNMUTE, OnStepFailure.WARN),  # the silence lapses by itself
])
def test_on_step_failure(step: Step, action: OnStepFailure) -> None:
    assert on_step_failure(step) is action


@pytest.mark.parametrize(("begun", "has_previous", "undo"), [
    ((), True, ()),
    ((S.PRECHECK,), True, ()),
    ((S.PRECHECK, S.STAGE), True, ()),
    ((S.PRECHECK, S.STAGE, S.MUTE), True, (S.UNMUTE,)),
    ((S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT), True, (S.PUT_BACK, S.UNMUTE)),
    ((S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT, S.QUIET), True, (S.PUT_BACK, S.UNMUTE)),
    ((S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT, S.QUIET, S.STOP), True, FULL_UNDO),
    ((S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT, S.QUIET, S.STOP, S.SWITCH, S.START, S.HEALTH), True, FULL_UNDO),
    (RELEASE_FLOW, True, (S.TAKE_OUT, S.QUIET, *FULL_UNDO)),
    ((S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT, S.QUIET, S.STOP, S.SWITCH, S.START, S.HEALTH, S.PUT_BACK), True,
     (S.TAKE_OUT, S.QUIET, *FULL_UNDO)),
    ((S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT, S.QUIET, S.STOP, S.SWITCH, S.START), False, (S.STOP, S.UNMUTE)),
    ((S.PRECHECK, S.STAGE, S.MUTE, S.TAKE_OUT), False, (S.UNMUTE,)),
    ((S.PRECHECK, S.STAGE, S.MUTE), False, (S.UNMUTE,)),
])
def test_undo_steps(begun: tuple[Step, ...], has_previous: bool, undo: tuple[Step, ...]) -> None:
    assert undo_steps(begun, has_previous=has_previous) == undo


def test_remaining_resumes_at_the_step_in_progress() -> None:
    assert remaining(RELEASE_FLOW, [S.PRECHECK, S.STAGE, S.MUTE])[0] is S.TAKE_OUT
    assert remaining(RELEASE_FLOW, RELEASE_FLOW) == ()


@pytest.mark.parametrize(("current", "new", "ok"), [
    (ReleaseState.PENDING, ReleaseState.RUNNING, True),
    (ReleaseState.RUNNING, ReleaseState.BAKING, True),
    (ReleaseState.BAKING, ReleaseState.AWAITING_PROMOTION, True),
    (ReleaseState.AWAITING_PROMOTION, ReleaseState.RUNNING, True),
    (ReleaseState.RUNNING, ReleaseState.PAUSED, True),
    (ReleaseState.PAUSED, ReleaseState.ROLLING_BACK, True),
    (ReleaseState.ROLLING_BACK, ReleaseState.ROLLED_BACK, True),
    (ReleaseState.RUNNING, ReleaseState.SUCCEEDED, True),
    (ReleaseState.SUCCEEDED, ReleaseState.RUNNING, False),
    (ReleaseState.ROLLED_BACK, ReleaseState.ROLLING_BACK, False),
    (ReleaseState.PAUSED, ReleaseState.SUCCEEDED, False),
    (ReleaseState.ROLLING_BACK, ReleaseState.RUNNING, False),
    (ReleaseState.PENDING, ReleaseState.BAKING, False),
])
def test_transitions(current: ReleaseState, new: ReleaseState, ok: bool) -> None:
    if ok:
        assert check_transition(current, new) is new
    else:
        with pytest.raises(StateError):
            check_transition(current, new)


@pytest.mark.parametrize("new", [ReleaseState.RUNNING, ReleaseState.BAKING, ReleaseState.SUCCEEDED])
def test_a_release_going_back_never_goes_forward_again(new: ReleaseState) -> None:
    with pytest.raises(StateError, match="rolling back"):
        check_transition(ReleaseState.PAUSED, new, Direction.BACK)
    assert check_transition(ReleaseState.PAUSED, ReleaseState.ROLLING_BACK, Direction.BACK)


R, F, B = ReleaseState, Direction.FORWARD, Direction.BACK
REL, RB = ReleaseKind.RELEASE, ReleaseKind.ROLLBACK


@pytest.mark.parametrize(("request_", "state", "direction", "kind", "outcome"), [
    # request, state, direction, kind -> (queued, moved to) or the start of the refusal
    (Request.PROMOTE, R.BAKING, F, REL, (True, None)),
    (Request.PROMOTE, R.RUNNING, F, REL, "only a baking"),
    (Request.PAUSE, R.RUNNING, F, REL, (True, None)),
    (Request.PAUSE, R.ROLLING_BACK, B, REL, "is rolling back"),
    (Request.PAUSE, R.PAUSED, F, REL, "already paused"),
    (Request.ABORT, R.ROLLING_BACK, B, REL, (True, None)),
    (Request.ABORT, R.PAUSED, B, REL, (True, None)),
    (Request.ROLLBACK, R.RUNNING, F, REL, (True, None)),
    (Request.ROLLBACK, R.PAUSED, F, REL, (False, R.ROLLING_BACK)),
    (Request.ROLLBACK, R.PAUSED, B, REL, "already rolling back"),
    (Request.ROLLBACK, R.RUNNING, F, RB, "itself a rollback"),
    (Request.RESUME, R.PAUSED, F, REL, (False, R.RUNNING)),
    (Request.RESUME, R.PAUSED, B, REL, (False, R.ROLLING_BACK)),  # a stuck rollback goes on rolling back
    (Request.RETRY, R.PAUSED, B, REL, (False, R.ROLLING_BACK)),
    (Request.RETRY, R.RUNNING, F, REL, "not paused"),
    (Request.RESUME, R.SUCCEEDED, F, REL, "already succeeded"),
])
def test_decide_request(request_: Request, state: ReleaseState, direction: Direction, kind: ReleaseKind,
                        outcome: tuple[bool, ReleaseState | None] | str) -> None:
    if isinstance(outcome, str):
        with pytest.raises(StateError, match=outcome):
            decide_request(request_, state=state, direction=direction, kind=kind, release_id=7)
        return
    got = decide_request(request_, state=state, direction=direction, kind=kind, release_id=7)
    assert (got.queue, got.move_to) == outcome


def test_finished_release_error_says_what_to_do() -> None:
    with pytest.raises(StateError, match="already succeeded; start a new release or rollback"):
        check_transition(ReleaseState.SUCCEEDED, ReleaseState.PAUSED)


PAUSE = Strategy(max_failed_per_batch=1, max_failed_total=2)
ROLLBACK = Strategy(max_failed_per_batch=1, max_failed_total=2, on_failure=OnFailure.ROLLBACK)


@pytest.mark.parametrize(("strategy", "canary", "in_batch", "total", "verdict"), [
    (PAUSE, True, 0, 0, Verdict.CONTINUE),
    (PAUSE, True, 1, 1, Verdict.PAUSE),
    (ROLLBACK, True, 1, 1, Verdict.ROLLBACK),
    (PAUSE, False, 1, 1, Verdict.CONTINUE),
    (PAUSE, False, 2, 2, Verdict.PAUSE),
    (PAUSE, False, 1, 3, Verdict.PAUSE),
    (ROLLBACK, False, 1, 3, Verdict.ROLLBACK),
    (Strategy(), False, 0, 0, Verdict.CONTINUE),
    (Strategy(), False, 1, 1, Verdict.PAUSE),
])
def test_after_batch(strategy: Strategy, canary: bool, in_batch: int, total: int, verdict: Verdict) -> None:
    decision = after_batch(strategy=strategy, canary=canary, failed_in_batch=in_batch, failed_total=total)
    assert decision.verdict is verdict
    assert bool(decision.reason) == (verdict is not Verdict.CONTINUE)


def test_a_rollback_release_only_ever_pauses() -> None:
    decision = after_batch(strategy=ROLLBACK, canary=False, failed_in_batch=2, failed_total=2, may_roll_back=False)
    assert decision.verdict is Verdict.PAUSE


T0 = datetime(2026, 1, 1, tzinfo=UTC)
AUTO = Strategy(promote=PromoteMode.AUTO)
MANUAL = Strategy(promote=PromoteMode.MANUAL)


@pytest.mark.parametrize(("strategy", "elapsed", "healthy", "requested", "outcome"), [
    (AUTO, 10, True, False, BakeOutcome.WAIT),
    (AUTO, 61, True, False, BakeOutcome.PROMOTE),
    (MANUAL, 61, True, False, BakeOutcome.AWAIT_PROMOTION),
    (MANUAL, 61, True, True, BakeOutcome.PROMOTE),
    (MANUAL, 10, True, True, BakeOutcome.PROMOTE),
    (AUTO, 10, False, False, BakeOutcome.FAIL),
    (MANUAL, 61, False, True, BakeOutcome.FAIL),
])
def test_bake_outcome(strategy: Strategy, elapsed: int, healthy: bool, requested: bool,
                      outcome: BakeOutcome) -> None:
    now = T0 + timedelta(seconds=elapsed)
    got = bake_outcome(strategy=strategy, now=now, bake_until=T0 + timedelta(seconds=60),
                       canaries_healthy=healthy, promote_requested=requested)
    assert got is outcome


@pytest.mark.parametrize(("age", "heartbeat", "stale"), [(5, True, False), (31, True, True), (0, False, True)])
def test_lease_is_stale(age: int, heartbeat: bool, stale: bool) -> None:
    beat = T0 if heartbeat else None
    assert lease_is_stale(now=T0 + timedelta(seconds=age), heartbeat_at=beat, stale_after=30) is stale
