"""Decisions as pure functions: failure budgets, canary promotion, what to do after a batch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from graylift.core.model import OnFailure, PromoteMode, Strategy


class Verdict(StrEnum):
    CONTINUE = "continue"
    PAUSE = "pause"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""


def after_batch(*, strategy: Strategy, canary: bool, failed_in_batch: int, failed_total: int,
                may_roll_back: bool = True) -> Decision:
    """What the release does once every host of a batch has settled.

    A canary tolerates no failure. A rolling batch may lose ``max_failed_per_batch`` hosts, the
    whole release ``max_failed_total``; past either budget the release pauses or rolls back
    (``strategy.on_failure``). A rollback release (``may_roll_back`` false) only ever pauses: rolling
    it back would put the bad version back.
    """

    def fail(reason: str) -> Decision:
        back = strategy.on_failure is OnFailure.ROLLBACK and may_roll_back
        return Decision(Verdict.ROLLBACK if back else Verdict.PAUSE, reason)

    if canary and failed_in_batch > 0:
        return fail(f"canary failed on {failed_in_batch} host(s)")
    if failed_in_batch > strategy.max_failed_per_batch:
        return fail(f"{failed_in_batch} host(s) failed in this batch; budget per batch is "
                    f"{strategy.max_failed_per_batch}")
    if failed_total > strategy.max_failed_total:
        return fail(f"{failed_total} host(s) failed in this release; budget is {strategy.max_failed_total}")
    return Decision(Verdict.CONTINUE)


class BakeOutcome(StrEnum):
    WAIT = "wait"  # bake period not over yet
    PROMOTE = "promote"  # go on to the rolling batches
    AWAIT_PROMOTION = "await_promotion"  # bake passed; a person must promote
    FAIL = "fail"  # a canary turned unhealthy while baking


def bake_outcome(
    *, strategy: Strategy, now: datetime, bake_until: datetime, canaries_healthy: bool, promote_requested: bool
) -> BakeOutcome:
    """Decide the canary bake, given the last health analysis of the canary hosts.

    A manual promote may cut the bake short (the person has seen enough); an unhealthy canary
    always fails the bake, even if a promote was requested.
    """
    if not canaries_healthy:
        return BakeOutcome.FAIL
    if promote_requested:
        return BakeOutcome.PROMOTE
    if now < bake_until:
        return BakeOutcome.WAIT
    return BakeOutcome.PROMOTE if strategy.promote is PromoteMode.AUTO else BakeOutcome.AWAIT_PROMOTION



def lease_is_stale(*, now: datetime, heartbeat_at: datetime | None, stale_after: float) -> bool:
    """A controller that has not written its heartbeat for ``stale_after`` seconds is taken to be dead."""
    return heartbeat_at is None or (now - heartbeat_at).total_seconds() > stale_after


def too_many_versions(serving: dict[str, int], target: str) -> str | None:
    """Why releasing ``target`` would put three versions in service at once (``serving``: version -> hosts on
    it), or None. Two versions side by side is what a release is; a third means nobody can tell which two
    must be compatible with each other."""
    others = {v: n for v, n in serving.items() if v != target}
    if len(others) < 2:
        return None
    now = " and ".join(f"{v} ({n} host{'s' if n != 1 else ''})" for v, n in sorted(others.items()))
    return (f"the hosts serve {now}; releasing {target} would put three versions in service at once: "
            f"first bring every host to one of them (finish or roll back the last release)")
