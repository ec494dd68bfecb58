"""The failure paths of the safety issue, each as a scenario over folder hosts and fake backends.

Every test names the rule it holds (docs/safety.md lists them with these tests).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import graylift.engine.hosts as hosts_module
from graylift.core.fence import fenced_command
from graylift.core.flow import Step
from graylift.core.model import OnFailure, OnUnhealthy, Strategy
from graylift.core.state import Direction, HostState, ReleaseState
from graylift.engine import Engine
from graylift.errors import LeaseLost, StoreUnreachable
from graylift.ports import SystemClock
from graylift.service import Graylift
from graylift.store import Store
from tests.engine.conftest import APP, ENV, World, package_bytes


def service(w: World) -> Graylift:
    """The service's request/resume/retry/rollback rules on the world's database (no config needed)."""
    return Graylift(Path("/nonexistent/graylift.yaml"), db_url=str(w.store.url))


def journaled_hosts(w: World, release_id: int) -> set[str]:
    return {e.host for e in w.store.journal_entries(release_id) if e.host}


def hook(monkeypatch: pytest.MonkeyPatch, before: Callable[[Step, Any], None]) -> None:
    """Call ``before(step, ctx)`` before every step the engine runs."""
    real = hosts_module.run_step

    async def run_step(step: Step, ctx: Any) -> dict[str, Any]:
        before(step, ctx)
        return await real(step, ctx)

    monkeypatch.setattr(hosts_module, "run_step", run_step)


# 1. a release that started rolling back only ever goes on rolling back -----------------------------------

def stuck_rollback(w: World, monkeypatch: pytest.MonkeyPatch) -> int:
    """2.0.0 reaches the canary and batch 1, then a rollback is asked for; h2's put-back fails during it."""
    assert w.release("1.0.0").state is ReleaseState.SUCCEEDED
    rid = w.start("2.0.0")

    def ask_rollback(step: Step, ctx: Any) -> None:
        if step is Step.PRECHECK and ctx.host.name == "h4" and ctx.target.forward:
            w.store.request(rid, "rollback")
            w.switch.fails.add(("put_back", "h2"))  # the rollback pass of h2 will not get it back in

    hook(monkeypatch, ask_rollback)
    rec = w.drive(rid)
    assert rec.state is ReleaseState.PAUSED and rec.direction is Direction.BACK, rec.message
    assert w.states(rid)["h2"] is HostState.NEEDS_ATTENTION
    return rid


@pytest.mark.parametrize("how", ["resume", "retry"])
def test_resume_or_retry_of_a_stuck_rollback_goes_on_rolling_back(world: World, how: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rid = stuck_rollback(world, monkeypatch)
    untouched = {h for h, s in world.states(rid).items() if s is HostState.PENDING}
    assert untouched  # hosts the release never reached
    world.switch.fails.clear()  # a person fixed the LB
    gl = service(world)
    rec = gl.resume(rid) if how == "resume" else gl.retry(rid)
    assert rec.state is ReleaseState.ROLLING_BACK
    rec = world.drive(rid)
    assert rec.state is ReleaseState.ROLLED_BACK, rec.message
    assert {world.current(h.name) for h in world.hosts} == {"1.0.0"}  # 2.0.0 went to no pending host
    assert {world.running(h.name) for h in world.hosts} == {"1.0.0"}
    assert untouched.isdisjoint({e.host for e in world.store.journal_entries(rid) if e.step == "stage"})
    assert world.store.current_version(APP, ENV) == "1.0.0"  # history never records 2.0.0 as deployed
    assert "2.0.0" in world.store.bad_versions(APP, ENV)
    assert world.switch.out == set() and world.silencer.muted == {}


def test_a_release_going_back_cannot_be_sent_forward(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = stuck_rollback(world, monkeypatch)
    with pytest.raises(Exception, match="rolling back"):
        world.store.transition(rid, ReleaseState.RUNNING, "forward again?")


# 2. a configured canary phase promotes only with its canaries on the new version -------------------------

def test_a_skipped_canary_is_replaced_by_another_host_of_the_canary_group(make_world: Callable[..., World]
                                                                         ) -> None:
    w = make_world(8, beta=2, strategy=Strategy(canary_group="beta", canary_count=1, batch_size=2,
                                                on_unhealthy=OnUnhealthy.SKIP))
    w.release("1.0.0")
    rid = w.start("2.0.0")
    (w.folders / "h1" / "running").unlink()  # the canary turns sick after the preflight, before its turn
    rec = w.drive(rid)
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    states = w.states(rid)
    assert states["h1"] is HostState.SKIPPED and states["h2"] is HostState.DONE
    replaced = [e for e in w.store.journal_entries(rid) if e.step == "canary" and e.event == "replaced"]
    assert replaced and replaced[0].detail["replacement"] == "h2" and replaced[0].detail["skipped"] == ["h1"]
    baked = next(e for e in w.store.journal_entries(rid) if e.step == "bake" and e.event == "wait")
    assert baked.detail["canaries"] == ["h2"]
    assert w.current("h1") == "1.0.0"


def test_with_no_canary_left_the_release_stops_before_any_other_host(world: World) -> None:
    world.release("1.0.0")
    rid = world.start("2.0.0")
    (world.folders / "h1" / "running").unlink()  # the only beta host turns sick before its turn
    rec = world.drive(rid)
    assert rec.state is ReleaseState.PAUSED
    assert "needs 1 canary" in rec.message and "no other host was touched" in rec.message
    assert journaled_hosts(world, rid) == {"h1"}
    assert {world.current(h.name) for h in world.hosts} == {"1.0.0"}


# 3. one driver per lease epoch ---------------------------------------------------------------------------

def test_a_controller_that_lost_its_lease_stops_without_touching_another_host(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.release("1.0.0")
    rid = world.start("2.0.0")
    taken: list[int] = []

    def take_over_during_the_canary_stop(step: Step, ctx: Any) -> None:
        if step is Step.STOP and ctx.host.name == "h1" and not taken:
            epoch = world.store.claim(rid, "controller-b", stale_after=0)  # A looked dead to B
            assert epoch is not None
            taken.append(epoch)

    hook(monkeypatch, take_over_during_the_canary_stop)
    with pytest.raises(LeaseLost, match="controller-b"):
        world.drive(rid, owner="controller-a")
    a_entries = [e for e in world.store.journal_entries(rid) if e.owner == "controller-a"]
    assert {e.host for e in a_entries if e.host} == {"h1"}  # A touched no other host
    after = [e for e in world.store.journal_entries(rid) if e.epoch == taken[0]]
    assert all(e.owner == "controller-b" for e in after)
    monkeypatch.undo()
    rec = world.drive(rid, owner="controller-b")  # B (a new epoch) finishes the release
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert {world.current(h.name) for h in world.hosts} == {"2.0.0"}
    by_epoch: dict[int, set[str]] = {}
    for e in world.store.journal_entries(rid):
        if e.epoch is not None:
            by_epoch.setdefault(e.epoch, set()).add(e.owner or "")
    assert all(len(owners) == 1 for owners in by_epoch.values())  # one driver per lease epoch


def test_a_command_sent_after_another_controller_touched_the_host_is_refused_by_the_host(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Controller A checked its lease and was frozen before its command (the check cannot see it); meanwhile B
    took over and ran a command on the host. The host refuses A's command: nothing of it runs."""
    world.release("1.0.0")
    rid = world.start("2.0.0")
    taken: list[int] = []

    def take_over_and_touch_h1_before_its_stop(step: Step, ctx: Any) -> None:
        if step is Step.STOP and ctx.host.name == "h1" and not taken:
            epoch = world.store.claim(rid, "controller-b", stale_after=0)
            assert epoch is not None
            taken.append(epoch)
            h1 = str(world.folders / "h1")  # the folder host h1 is; B's first command there, fenced by its lease
            b_command = fenced_command(h1, world.store.instance_id(), epoch, "true", wait=5)
            subprocess.run(["sh", "-c", b_command], check=True)

    hook(monkeypatch, take_over_and_touch_h1_before_its_stop)
    with pytest.raises(LeaseLost, match=r"h1 refused the command: graylift-fence: refused"):
        world.drive(rid, owner="controller-a")
    assert (world.folders / "h1" / "running").read_text().strip() == "1.0.0"  # A's stop did not run
    assert world.current("h1") == "1.0.0"
    monkeypatch.undo()
    rec = world.drive(rid, owner="controller-b")
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert {world.current(h.name) for h in world.hosts} == {"2.0.0"}


class FrozenClock(SystemClock):
    """A controller frozen (SIGSTOP) for ``jump`` seconds when ``freeze`` is called: its clocks jump."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.offset


def drive_frozen_in_h1_stop(world: World, monkeypatch: pytest.MonkeyPatch,
                            while_frozen: Callable[[int], None] = lambda rid: None) -> tuple[int, Any]:
    """Release 2.0.0 with a controller frozen (SIGSTOP, or starved of CPU) for a minute in h1's stop, far past
    its own deadline; ``while_frozen(rid)`` is what the world does meanwhile. The drive's outcome: its
    record, or the LeaseLost it stopped with."""
    world.release("1.0.0")
    rid = world.start("2.0.0")
    clock = FrozenClock()

    def freeze_during_stop(step: Step, ctx: Any) -> None:
        if step is Step.STOP and ctx.host.name == "h1" and not clock.offset:
            clock.offset += 60  # thawed a minute later
            while_frozen(rid)

    hook(monkeypatch, freeze_during_stop)

    async def fleet(_: Any) -> Any:
        return world.fleet

    try:
        return rid, asyncio.run(Engine(world.store, fleet, clock=clock, owner="frozen").drive(rid))
    except LeaseLost as lost:
        return rid, lost


def acted_after_the_freeze(world: World, rid: int, owner: str) -> list[str]:
    return [f"{e.host} {e.step}" for e in world.store.journal_entries(rid)
            if e.owner == owner and e.host and e.step in ("switch", "start", "health", "put_back")]


def test_a_controller_frozen_past_its_deadline_while_another_took_over_stops_on_its_own(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def taken_over(rid: int) -> None:
        assert world.store.claim(rid, "controller-b", stale_after=0) is not None  # it looked dead to B

    rid, outcome = drive_frozen_in_h1_stop(world, monkeypatch, taken_over)
    assert isinstance(outcome, LeaseLost) and "another controller" in str(outcome), outcome
    assert acted_after_the_freeze(world, rid, "frozen") == []  # it did nothing after the stop it was frozen in


def test_a_controller_frozen_past_its_deadline_that_cannot_reach_the_database_stops_on_its_own(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def database_gone(rid: int) -> None:
        def unreachable(*args: Any, **kwargs: Any) -> bool:
            raise StoreUnreachable("state database failed: connection refused")

        monkeypatch.setattr(Store, "heartbeat", unreachable)

    rid, outcome = drive_frozen_in_h1_stop(world, monkeypatch, database_gone)
    assert isinstance(outcome, LeaseLost) and "stops before another may take over" in str(outcome), outcome
    assert acted_after_the_freeze(world, rid, "frozen") == []


def test_a_controller_frozen_past_its_deadline_that_nobody_took_over_renews_and_finishes(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starved of CPU on a loaded machine for longer than its deadline (CI saw it under wrk load): the
    database says the lease is still its own, so it renews there, says so in the journal, and finishes."""
    rid, outcome = drive_frozen_in_h1_stop(world, monkeypatch)
    assert not isinstance(outcome, LeaseLost), outcome
    assert outcome.state is ReleaseState.SUCCEEDED, outcome.message
    assert {world.current(h.name) for h in world.hosts} == {"2.0.0"}
    late = [e for e in world.store.journal_entries(rid) if e.step == "lease" and e.event == "renewed late"]
    assert len(late) == 1 and late[0].detail["silent_seconds"] >= 60, late
    driven = {(e.owner, e.epoch) for e in world.store.journal_entries(rid) if e.owner}
    assert len(driven) == 1 and driven.pop()[0] == "frozen"  # one driver, one epoch


# 4. every pass goes through one cap check ----------------------------------------------------------------

@pytest.mark.parametrize(("skipped", "h4", "size", "outcome", "waves"), [
    # h4's take-out fails and it is reverted: it serves again, so 2 are out and the rollback goes 2 at a time
    (("h5", "h6"), "take_out", 2, ReleaseState.ROLLED_BACK, [["h1", "h2"], ["h3"]]),
    # the case: 3 skipped as unhealthy and h4 failed its pre-check (unreachable): 4 of 10 are out,
    # one more would be 50%: the rollback pauses instead of taking 4 more out at once
    (("h5", "h6", "h7"), "unreachable", 1, ReleaseState.PAUSED, []),
])
def test_a_rollback_never_takes_half_or_more_out(make_world: Callable[..., World], skipped: tuple[str, ...], h4: str,
                                                 size: int, outcome: ReleaseState, waves: list[list[str]]) -> None:
    w = make_world(10, beta=0, strategy=Strategy(batch_size=size, on_failure=OnFailure.ROLLBACK,
                                                 on_unhealthy=OnUnhealthy.SKIP))
    w.release("1.0.0")
    for host in skipped:
        (w.folders / host / "running").unlink()  # unhealthy before the release: skipped
    w.watch_the_cap()
    rid = w.start("2.0.0")
    if h4 == "take_out":
        w.switch.fails.add(("take_out", "h4"))
    else:
        w.fleet.unreachable.add("h4")  # cut off after the preflight
    rec = w.drive(rid)
    assert rec.state is outcome, rec.message
    assert w.max_out_seen * 2 < 10, w.max_out_seen  # never 50% or more out or not serving
    if outcome is ReleaseState.PAUSED:
        assert "never takes 50% or more out" in rec.message
        assert "h1" in rec.plan["back_pass"]
    else:
        assert {w.current(f"h{i}") for i in range(1, 5)} == {"1.0.0"}
    got = [e.detail["hosts"] for e in w.store.journal_entries(rec.id) if e.step.startswith("rollback ")
           and e.event == "begin"]
    assert got == waves


def test_hosts_an_earlier_release_left_needing_attention_count_against_the_cap(
        make_world: Callable[..., World]) -> None:
    w = make_world(6, beta=0, strategy=Strategy(batch_size=2))
    w.release("1.0.0")
    for host in ("h5", "h6"):
        w.store.mark_needs_attention(APP, ENV, host, reason="left out by release #1", backends={}, release_id=1)
    rec = w.drive(w.start("2.0.0"))  # batches of 2 + 2 hosts needing attention = 4 of 6
    assert rec.state is ReleaseState.PAUSED and "50%" in rec.message
    assert journaled_hosts(w, rec.id) == set()


# 5. going back never needs the artifact repository -------------------------------------------------------

def test_revert_and_rollback_with_the_repository_down(world: World) -> None:
    world.release("1.0.0")
    world.release("2.0.0")
    rid = world.start("3.0.0")  # its package is pinned; then the repository goes down
    world.repository.down = True
    asked = len(world.repository.resolved)
    rec = world.drive(rid)
    assert rec.state is ReleaseState.PAUSED  # the canary failed its health check and was reverted
    assert world.current("h1") == "2.0.0" and world.running("h1") == "2.0.0"
    gl = service(world)
    target = gl.previous_good_version(APP, ENV, world.store.current_version(APP, ENV))
    assert target == "1.0.0"
    gl.request(rid, "abort")
    world.drive(rid)
    rec = world.drive(world.start(target, kind="rollback"))
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert {world.current(h.name) for h in world.hosts} == {"1.0.0"}
    assert len(world.repository.resolved) == asked  # never asked the repository


# 6. precheck's reading is the one source of the previous version -----------------------------------------

def test_an_unreadable_host_fails_precheck_untouched(world: World) -> None:
    world.release("1.0.0")
    world.fleet.unreachable.add("h3")
    rid = world.start("2.0.0")
    rec = world.drive(rid)
    run = world.store.host_run(rid, "h3")
    assert run.state is HostState.FAILED and "connection refused" in (run.error or "")
    assert {e.step for e in world.store.journal_entries(rid, "h3") if e.event == "begin"} <= {"precheck"}
    assert world.current("h3") == "1.0.0" and world.running("h3") == "1.0.0"
    assert rec.state is ReleaseState.PAUSED  # a failure past the budget


def test_a_layout_graylift_does_not_understand_is_refused_at_precheck(world: World) -> None:
    world.release("1.0.0")
    current = world.folders / "h2" / "current"
    current.unlink()
    current.mkdir()  # installed by hand: a real directory
    (current / "VERSION").write_text("0.9")
    rec = world.drive(world.start("2.0.0"))
    run = world.store.host_run(rec.id, "h2")
    assert run.state is HostState.FAILED
    assert "is a directory, not a symlink" in (run.error or "")
    assert current.is_dir() and not current.is_symlink()  # untouched


def test_a_healthy_host_already_on_the_target_is_done_without_a_restart(world: World) -> None:
    world.release("1.0.0")
    rid = world.start("2.0.0")
    world.drive(rid)
    rid2 = world.start("2.0.0")  # everything is on 2.0.0 already
    rec = world.drive(rid2)
    assert rec.state is ReleaseState.SUCCEEDED
    begun = {e.step for e in world.store.journal_entries(rid2) if e.host and e.event == "begin"}
    assert begun == {"precheck", "put_back", "unmute"}  # made sure it is in traffic; no stop, no start
    assert all(r.previous_version == "2.0.0" for r in world.store.host_runs(rid2))


# 7. versions are immutable; stage never rewrites a release in use ----------------------------------------

def test_the_same_version_with_another_sha256_is_refused(world: World) -> None:
    world.release("1.0.0")
    world.release("2.0.0")
    marker = world.folders / "h1" / "releases" / "2.0.0" / ".graylift-sha256"
    recorded = marker.read_text()
    rebuilt = world.repository.store.directory / f"{APP}-2.0.0.tar.gz"
    rebuilt.write_bytes(package_bytes("2.0.0-rebuilt", True))
    rec = world.drive(world.start("2.0.0"))
    run = world.store.host_run(rec.id, "h1")
    assert run.state is HostState.FAILED and "versions are immutable" in (run.error or "")
    assert marker.read_text() == recorded  # the release in use was not rewritten
    assert world.running("h1") == "2.0.0"


def test_rebuilt_versions_stage_into_their_own_directory(world: World) -> None:
    world.fleet.runtime.rebuilt_versions = True
    world.release("1.0.0")
    world.release("2.0.0")
    first_dir = world.current("h1")
    (world.repository.store.directory / f"{APP}-2.0.0.tar.gz").write_bytes(package_bytes("2.0.0b", True))
    rec = world.release("2.0.0")
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert world.current("h1") != first_dir and world.current("h1").startswith("2.0.0+")
    assert (world.folders / "h1" / "releases" / first_dir).is_dir()  # the previous build, kept
    assert world.running("h1") == "2.0.0b"


READ_FOR_THE_STAGE = 'echo "present $s"'  # what the deploy dir's read for a stage step (release_dirs_script) runs


class Crash(BaseException):
    """Stands for kill -9: nothing in the engine catches it."""


def test_a_stage_right_after_its_pre_check_reads_the_deploy_dir_from_it_and_a_resumed_one_reads_it_again(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage step right after its pass's pre-check (the same walk) takes the release dirs from the survey
    the pre-check just read; one resumed after a crash between the two reads the deploy dir itself."""
    world.release("1.0.0")
    sent = {h.name: len(world.fleet.transports[h.name].commands) for h in world.hosts}
    assert world.release("2.0.0").state is ReleaseState.SUCCEEDED
    for host in world.hosts:
        commands = world.fleet.transports[host.name].commands[sent[host.name]:]
        assert not [c for c in commands if READ_FOR_THE_STAGE in c], host.name
    crashed: list[str] = []

    def crash_before_stage(step: Step, ctx: Any) -> None:
        if step is Step.STAGE and ctx.host.name == "h1" and not crashed:
            crashed.append("h1")
            raise Crash

    hook(monkeypatch, crash_before_stage)
    rid = world.start("4.0.0")
    with pytest.raises(Crash):
        world.drive(rid)
    sent = {h.name: len(world.fleet.transports[h.name].commands) for h in world.hosts}
    assert world.drive(rid).state is ReleaseState.SUCCEEDED  # a new controller: h1 goes on at its stage step
    reads = [c for c in world.fleet.transports["h1"].commands[sent["h1"]:] if READ_FOR_THE_STAGE in c]
    assert len(reads) == 1
    assert world.current("h1") == "4.0.0" and world.running("h1") == "4.0.0"
    assert sorted(p.name for p in (world.folders / "h1" / "releases").iterdir()) == ["1.0.0", "2.0.0", "4.0.0"]


def test_stage_never_replaces_an_unverifiable_release_in_use(world: World) -> None:
    for host in world.hosts:
        world.install_by_script(host.name, "4.0.0")  # another tool's 4.0.0, unmarked, in use
    (world.folders / "h1" / "running").write_text("4.0.0")
    rec = world.release("4.0.0")  # healthy hosts already on 4.0.0: done, nothing rewritten
    assert rec.state is ReleaseState.SUCCEEDED
    assert not (world.folders / "h1" / "releases" / "4.0.0" / ".graylift-sha256").exists()


# 8. rollback walks back through good releases -------------------------------------------------------------

def test_rollback_twice_walks_back_and_never_to_a_rolled_back_version(world: World) -> None:
    for version in ("1.0.0", "2.0.0", "4.0.0"):
        assert world.release(version).state is ReleaseState.SUCCEEDED
    gl = service(world)
    first = gl.previous_good_version(APP, ENV, world.store.current_version(APP, ENV))
    assert first == "2.0.0"
    assert world.drive(world.start(first, kind="rollback")).state is ReleaseState.SUCCEEDED
    second = gl.previous_good_version(APP, ENV, world.store.current_version(APP, ENV))
    assert second == "1.0.0"  # not 4.0.0 again
    assert world.drive(world.start(second, kind="rollback")).state is ReleaseState.SUCCEEDED
    assert {world.current(h.name) for h in world.hosts} == {"1.0.0"}
    assert set(world.store.bad_versions(APP, ENV)) == {"4.0.0", "2.0.0"}


def test_a_rollback_reads_each_hosts_own_version(world: World) -> None:
    world.release("1.0.0")
    world.release("2.0.0")
    world.install_by_script("h4", "1.0.0")  # someone already put h4 back by hand
    rid = world.start("1.0.0", kind="rollback")
    world.drive(rid)
    runs = {r.host: r for r in world.store.host_runs(rid)}
    assert runs["h4"].previous_version == "1.0.0" and runs["h5"].previous_version == "2.0.0"
    begun = [e.step for e in world.store.journal_entries(rid, "h4") if e.event == "begin"]
    assert begun == ["precheck", "put_back", "unmute"]


# 9. a fleet another tool installed --------------------------------------------------------------------

def test_a_brownfield_fleet_rolls_back_to_what_it_ran(world: World) -> None:
    for host in world.hosts:
        world.install_by_script(host.name, "1.0.0")  # current -> /abs/releases/1.0.0, no markers
    rid = world.start("2.0.0")
    assert world.drive(rid).state is ReleaseState.SUCCEEDED
    assert {r.previous_version for r in world.store.host_runs(rid)} == {"1.0.0"}
    world.repository.down = True  # 1.0.0 was never in this repository anyway
    rec = world.drive(world.start("1.0.0", kind="rollback"))
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert {world.current(h.name) for h in world.hosts} == {"1.0.0"}
    assert {world.running(h.name) for h in world.hosts} == {"1.0.0"}


# 10. one broken backend never keeps a host out of the others -------------------------------------------

def test_a_failing_put_back_leaves_the_host_in_the_working_backends(make_world: Callable[..., World]) -> None:
    w = make_world(6, switches=2)
    w.release("1.0.0")
    lb1, lb2 = w.switches
    lb2.fails.add(("put_back", "h3"))
    rid = w.start("2.0.0")
    rec = w.drive(rid)
    run = w.store.host_run(rid, "h3")
    assert run.state is HostState.NEEDS_ATTENTION
    assert set(run.attention or {}) == {"lb2"}  # only the backend that failed
    assert "h3" not in lb1.out and "h3" in lb2.out  # back in lb1, which works
    assert w.running("h3") == "2.0.0"  # healthy on the new version: not reverted
    assert "h3" in w.store.host_health(APP, ENV)  # counted as out by later releases
    assert rec.state is ReleaseState.PAUSED
    assert w.silencer.muted == {}  # its alerts fire


def test_undo_tries_every_backend(make_world: Callable[..., World]) -> None:
    w = make_world(6, switches=2)
    w.release("1.0.0")
    lb1, lb2 = w.switches
    lb1.fails.add(("take_out", "h1"))  # lb1 refuses; lb2 took it out: the undo must put it back in lb2
    rec = w.drive(w.start("2.0.0"))
    assert w.store.host_run(rec.id, "h1").state is HostState.FAILED
    assert lb2.out == set() and lb1.out == set()
    assert w.running("h1") == "1.0.0"


def test_pruning_keeps_the_versions_a_rollback_would_go_to(world: World) -> None:
    for version in ("1.0.0", "2.0.0", "4.0.0"):
        world.release(version)
    assert world.drive(world.start("2.0.0", kind="rollback")).state is ReleaseState.SUCCEEDED  # 4.0.0 is bad
    world.release("5.0.0")  # keep_releases is 3: the target, the previous (2.0.0), then 1.0.0 over the newer 4.0.0
    kept = sorted(p.name for p in (world.folders / "h3" / "releases").iterdir())
    assert kept == ["1.0.0", "2.0.0", "5.0.0"]


def test_pruning_keeps_the_versions_a_rollback_would_go_to_with_rebuilt_versions(world: World) -> None:
    """The same with ``rebuilt_versions`` (a dir is ``<version>+<sha256 prefix>``): the stage step matches dirs to
    versions by the markers its pre-check read, so the good 1.0.0 is kept over the newer, rolled-back 4.0.0."""
    world.fleet.runtime.rebuilt_versions = True
    for version in ("1.0.0", "2.0.0", "4.0.0"):
        world.release(version)
    staged = sorted(p.name for p in (world.folders / "h3" / "releases").iterdir())
    assert world.drive(world.start("2.0.0", kind="rollback")).state is ReleaseState.SUCCEEDED  # 4.0.0 is bad
    # the rollback reused the 2.0.0 build the host has (no second 2.0.0 dir, nothing pruned)
    assert sorted(p.name for p in (world.folders / "h3" / "releases").iterdir()) == staged
    world.release("5.0.0")
    kept = sorted(p.name.split("+")[0] for p in (world.folders / "h3" / "releases").iterdir())
    assert kept == ["1.0.0", "2.0.0", "5.0.0"]


def test_a_host_a_release_succeeds_on_is_no_longer_marked(make_world: Callable[..., World]) -> None:
    """The CMDB's needs-attention mark of a host goes with its successful pass (written with its state)."""
    w = make_world(6, beta=0, strategy=Strategy(batch_size=1))
    w.release("1.0.0")
    w.store.mark_needs_attention(APP, ENV, "h6", reason="left out by release #1", backends={}, release_id=1)
    rec = w.drive(w.start("2.0.0"))
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert w.store.host_health(APP, ENV) == {} and w.current("h6") == "2.0.0"
