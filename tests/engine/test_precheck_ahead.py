"""The pre-check read ahead: a host's pre-check uses a read of it taken before its turn.

With the real engine, store and steps over folder hosts (graylift.testing). A read ahead is the pre-check's
own read (survey and health, read-only), taken by the release's preflight (handed to a drive in the same
process, as `release --wait` does) or when the first host of the batch before is out of traffic; a host's
pre-check uses it when it is at most ``strategy.precheck_ahead_seconds`` old, else reads the host anew, and
still asks the host to answer (a ping, which runs nothing there) before anything is muted or taken out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from graylift.core.layout import SURVEY_ORDER
from graylift.core.model import Strategy
from graylift.core.state import HostState, ReleaseState, Request
from graylift.engine import Engine
from graylift.engine.ahead import ReadsAhead
from graylift.preflight import preflight
from graylift.testing import PING, FolderTransport
from tests.engine.conftest import APP, ENV, World
from tests.engine.test_prestage import STRATEGY as PRESTAGE
from tests.engine.test_prestage import prestage_world
from tests.engine.test_service_safety import make_service

# 7 hosts: canary h1, then batches [h2, h3], [h4, h5], [h6, h7]
STRATEGY = Strategy(canary_group="beta", batch_size=2)


def surveys(world: World, host: str) -> int:
    return sum(SURVEY_ORDER in c for c in world.fleet.transports[host].commands)


def prechecks(world: World, rid: int) -> dict[str, dict[str, object]]:
    return {e.host: e.detail for e in world.store.journal_entries(rid) if e.step == "precheck" and e.event == "done"}


def test_the_next_batch_is_read_while_this_one_restarts_and_each_host_is_read_once(
        make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(7, strategy=STRATEGY)
    world.release("1.0.0")
    read_at: dict[str, float] = {}  # host -> when its survey went out
    send = FolderTransport.run

    async def run(self: FolderTransport, command: str, **options: Any) -> Any:
        if SURVEY_ORDER in command:
            read_at[self.host.name] = time.time()
        return await send(self, command, **options)

    monkeypatch.setattr(FolderTransport, "run", run)
    before = {h.name: surveys(world, h.name) for h in world.hosts}
    sent = {h.name: len(world.fleet.transports[h.name].commands) for h in world.hosts}
    rid = world.start("2.0.0")
    assert world.drive(rid).state is ReleaseState.SUCCEEDED
    done = prechecks(world, rid)
    # read ahead: the hosts of batches 2 and 3 (read during the batch before); not the canary's nor batch 1's
    # (a canary's bake may be long: nothing is read ahead of it, nor during it)
    ahead = {h for h, detail in done.items() if "read_ahead_seconds" in detail}
    assert ahead == {"h4", "h5", "h6", "h7"}, done
    for host in ahead:
        assert 0 <= float(done[host]["read_ahead_seconds"]) <= STRATEGY.precheck_ahead_seconds  # type: ignore[arg-type]
        assert done[host]["current"] == "1.0.0" and done[host]["healthy"] is True
    # a host read ahead was pinged before its turn went on (a round trip, no command); one read now was not
    pinged = {h.name for h in world.hosts if PING in world.fleet.transports[h.name].commands[sent[h.name]:]}
    assert pinged == ahead
    assert not any(c.strip() == "true" for h in world.hosts for c in world.fleet.transports[h.name].commands)
    # one read of each host per release, ahead or not
    assert {h.name: surveys(world, h.name) - before[h.name] for h in world.hosts} == {h.name: 1 for h in world.hosts}
    # and each read went out while the batch before restarted: after its first take-out began, before its end
    journal = world.store.journal_entries(rid)

    def at(step: str, event: str, hosts: tuple[str | None, ...] = (None,)) -> float:
        return min(e.at.replace(tzinfo=UTC).timestamp() for e in journal
                   if e.step == step and e.event == event and e.host in hosts)

    for before, hosts, read in (("batch 1", ("h2", "h3"), ("h4", "h5")), ("batch 2", ("h4", "h5"), ("h6", "h7"))):
        for host in read:
            assert at("take_out", "begin", hosts) <= read_at[host] <= at(before, "done"), (host, read_at)
    assert all(world.current(h.name) == "2.0.0" for h in world.hosts)


def test_a_read_older_than_the_limit_is_not_used_the_host_is_read_again(make_world: Callable[..., World]) -> None:
    # a pause between batches longer than the limit: every read ahead is too old when its host's turn comes
    world = make_world(7, strategy=dataclasses.replace(STRATEGY, pause_seconds=0.6, precheck_ahead_seconds=0.2))
    world.release("1.0.0")
    before = {h.name: surveys(world, h.name) for h in world.hosts}
    rid = world.start("2.0.0")
    assert world.drive(rid).state is ReleaseState.SUCCEEDED
    assert not any("read_ahead_seconds" in d for d in prechecks(world, rid).values())
    read = {h.name: surveys(world, h.name) - before[h.name] for h in world.hosts}
    assert read == {"h1": 1, "h2": 1, "h3": 1, "h4": 2, "h5": 2, "h6": 2, "h7": 2}  # read ahead, then read anew


def test_off_with_zero(make_world: Callable[..., World]) -> None:
    world = make_world(7, strategy=dataclasses.replace(STRATEGY, precheck_ahead_seconds=0))
    world.release("1.0.0")
    before = {h.name: surveys(world, h.name) for h in world.hosts}
    rid = world.start("2.0.0")
    assert world.drive(rid).state is ReleaseState.SUCCEEDED
    assert not any("read_ahead_seconds" in d for d in prechecks(world, rid).values())
    assert {h.name: surveys(world, h.name) - before[h.name] for h in world.hosts} == {h.name: 1 for h in world.hosts}


def test_a_host_read_unhealthy_ahead_is_skipped_as_its_own_pre_check_would(make_world: Callable[..., World]) -> None:
    world = make_world(7, strategy=STRATEGY)
    world.release("1.0.0")
    rid = world.start("2.0.0")
    (world.folders / "h5" / "running").unlink()  # h5's app goes down after the plan: its pre-check finds it
    assert world.drive(rid).state is ReleaseState.SUCCEEDED
    assert world.states(rid)["h5"] is HostState.SKIPPED
    assert world.current("h5") == "1.0.0" and "h5" not in world.switch.out


def test_a_pause_leaves_the_hosts_read_ahead_untouched_and_a_resume_reads_them_again(
        make_world: Callable[..., World]) -> None:
    world = make_world(7, strategy=STRATEGY)
    world.release("1.0.0")
    rid = world.start("2.0.0")
    at_start = {h: surveys(world, h) for h in ("h6", "h7")}

    async def pause_during_batch_2() -> None:
        engine = world.engine()
        drive = asyncio.create_task(engine.drive(rid))
        while not any(e.host == "h4" and e.step == "precheck" for e in world.store.journal_entries(rid)):
            await asyncio.sleep(0.01)
        world.store.request(rid, Request.PAUSE.value)
        rec = await drive
        assert rec.state is ReleaseState.PAUSED, rec.message

    asyncio.run(pause_during_batch_2())
    states = world.states(rid)
    assert states["h4"] is HostState.DONE and states["h5"] is HostState.DONE  # batch 2 finished its hosts
    assert all(surveys(world, h) - at_start[h] == 1 for h in ("h6", "h7"))  # and read the next ones ahead
    assert {states[h] for h in ("h6", "h7")} == {HostState.PENDING}  # never begun
    assert not [e for e in world.store.journal_entries(rid) if e.host in ("h6", "h7")]
    assert "h6" not in world.switch.out and world.silencer.muted == {}
    before = {h: surveys(world, h) for h in ("h6", "h7")}
    world.store.transition(rid, ReleaseState.RUNNING, "resumed", expect=ReleaseState.PAUSED)  # graylift resume
    rec = world.drive(rid)
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    # the reads of the drive before are gone with it: each host is read at its turn (or ahead) again
    assert all(surveys(world, h) - before[h] == 1 for h in ("h6", "h7"))
    assert all(world.current(h.name) == "2.0.0" for h in world.hosts)


# --- the preflight's reads ------------------------------------------------------------------------


async def with_preflight_reads(world: World, rid: int, version: str) -> Engine:
    """An engine holding the reads a preflight took just now, as `graylift release --wait` hands them over."""
    report = await preflight(world.fleet, world.hosts, version=version)
    reads = {rid: {name: read for name, r in report.hosts.items() if (read := r.read()) is not None}}

    async def fleet(rec: Any) -> Any:
        return world.fleet

    return Engine(world.store, fleet, reads=reads)


def drive_with_preflight_reads(world: World, rid: int, version: str) -> ReleaseState:
    async def both() -> ReleaseState:
        return (await (await with_preflight_reads(world, rid, version)).drive(rid)).state

    return asyncio.run(both())


def test_the_preflights_reads_serve_the_pre_checks_with_what_the_pre_stage_put_there(
        make_world: Callable[..., World]) -> None:
    world = prestage_world(make_world, 7, dataclasses.replace(PRESTAGE, batch_size=2))
    world.release("1.0.0")
    rid = world.start("2.0.0")
    before = {h.name: surveys(world, h.name) for h in world.hosts}
    assert drive_with_preflight_reads(world, rid, "2.0.0") is ReleaseState.SUCCEEDED
    # one read of each host for the whole release: the preflight's (its pre-check took it)
    assert {h.name: surveys(world, h.name) - before[h.name] for h in world.hosts} == {h.name: 1 for h in world.hosts}
    done = prechecks(world, rid)
    assert all("read_ahead_seconds" in done[h.name] for h in world.hosts), done
    for entry in world.store.journal_entries(rid):
        if entry.step == "stage" and entry.event == "done":
            assert "reused" in entry.detail, entry.detail  # the read says the pre-stage put it there
    staged = {e.host: e.detail["dir"] for e in world.store.journal_entries(rid) if e.event == "staged"}
    assert sorted(staged) == sorted(h.name for h in world.hosts)
    for run in world.store.host_runs(rid):  # the host's recorded read: the preflight's, with the staged dir
        assert run.found is not None and run.found.version == "1.0.0" and staged[run.host] in run.found.releases
    assert all(world.current(h.name) == "2.0.0" for h in world.hosts)


def test_a_preflight_read_older_than_the_limit_is_read_again(make_world: Callable[..., World]) -> None:
    world = make_world(7, strategy=dataclasses.replace(STRATEGY, pause_seconds=0.6, precheck_ahead_seconds=0.2))
    world.release("1.0.0")
    rid = world.start("2.0.0")
    before = {h.name: surveys(world, h.name) for h in world.hosts}
    assert drive_with_preflight_reads(world, rid, "2.0.0") is ReleaseState.SUCCEEDED
    # the canary's turn comes at once (its read is used); every later host's read is too old: batch 1's hosts
    # are read again at their turn (nothing is read ahead during a canary), the others ahead during the batch
    # before and, that read too old again after the pause, at their turn
    read = {h.name: surveys(world, h.name) - before[h.name] for h in world.hosts}
    assert read == {"h1": 1, "h2": 2, "h3": 2, "h4": 3, "h5": 3, "h6": 3, "h7": 3}, read


def test_release_wait_hands_the_preflights_reads_to_its_drive_and_a_detached_start_does_not(
        make_world: Callable[..., World], tmp_path: Path) -> None:
    world = make_world(8)
    gl = make_service(world, tmp_path)
    first = asyncio.run(gl.start_release(APP, ENV, "1.0.0", started_by="test"))  # not within: driven elsewhere
    assert gl.engine().reads == {}
    asyncio.run(gl.engine().drive(first.id))
    before = {h.name: surveys(world, h.name) for h in world.hosts}

    async def release_wait() -> Any:  # what `graylift release --wait` does (cli.releases._start_and_drive)
        async with gl.sharing_connections():
            rec = await gl.start_release(APP, ENV, "2.0.0", started_by="test")
            return await gl.drive_here(rec.id)

    rec = asyncio.run(release_wait())
    assert rec.state is ReleaseState.SUCCEEDED, rec.message
    assert {h.name: surveys(world, h.name) - before[h.name] for h in world.hosts} == {h.name: 1 for h in world.hosts}
    assert all("read_ahead_seconds" in d for d in prechecks(world, rec.id).values())
    assert gl._reads is None  # nothing kept after it


def test_a_rollback_mid_release_reads_every_host_it_moves_back_itself(make_world: Callable[..., World]) -> None:
    world = make_world(7, strategy=STRATEGY)
    world.release("1.0.0")
    rid = world.start("2.0.0")
    before = {h.name: surveys(world, h.name) for h in world.hosts}

    async def roll_back_after_batch_1() -> ReleaseState:
        drive = asyncio.create_task((await with_preflight_reads(world, rid, "2.0.0")).drive(rid))
        while not any(e.step == "batch 1" and e.event == "done" for e in world.store.journal_entries(rid)):
            await asyncio.sleep(0.005)
        world.store.request(rid, Request.ROLLBACK.value)
        return (await drive).state

    assert asyncio.run(roll_back_after_batch_1()) is ReleaseState.ROLLED_BACK
    moved = [r.host for r in world.store.host_runs(rid) if r.state is HostState.ROLLED_BACK]
    assert {"h1", "h2", "h3"} <= set(moved)
    back = [e for e in world.store.journal_entries(rid) if e.step == "precheck" and e.event == "done"
            and e.host in moved and e.detail.get("current") == "2.0.0"]  # the back pass's pre-checks
    assert sorted(e.host for e in back) == sorted(moved) and not any("read_ahead_seconds" in e.detail for e in back)
    for host in moved:  # the preflight's read served its forward pre-check; its back pass read it itself
        assert surveys(world, host) - before[host] == 2, host
        assert world.current(host) == "1.0.0"


def test_a_host_cut_off_after_its_read_fails_its_pre_check_untouched(make_world: Callable[..., World]) -> None:
    """Its read says it is fine, but its connection died since: found before anything is muted or taken out
    (pre-staged, the stage step sends nothing: the restart would be its first command)."""
    world = prestage_world(make_world, 7, dataclasses.replace(PRESTAGE, batch_size=2))
    world.release("1.0.0")
    rid = world.start("2.0.0")

    calls_before = len(world.switch.calls)

    async def cut_off_after_the_preflight() -> ReleaseState:
        engine = await with_preflight_reads(world, rid, "2.0.0")
        note_staged = ReadsAhead.note_staged

        def cut_off_once_staged(self: ReadsAhead, host: str, *args: Any) -> None:
            note_staged(self, host, *args)
            if host == "h5":
                world.fleet.transports["h5"].unreachable = True  # its connection dies after the pre-stage

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ReadsAhead, "note_staged", cut_off_once_staged)
            return (await engine.drive(rid)).state

    assert asyncio.run(cut_off_after_the_preflight()) is ReleaseState.PAUSED  # the failure budget is 0
    run = {r.host: r for r in world.store.host_runs(rid)}["h5"]
    assert run.state is HostState.FAILED and run.error is not None and run.error.startswith("precheck:"), run
    assert not [c for c in world.switch.calls[calls_before:] if c[1] == "h5"] and "h5" not in world.silencer.muted
    assert world.current("h5") == "1.0.0" and world.running("h5") == "1.0.0"


def test_a_host_on_the_target_already_is_judged_on_a_read_of_now(make_world: Callable[..., World]) -> None:
    """A read ahead would leave it as it is: its app fell over since, so it is read again (and skipped)."""
    world = make_world(7, strategy=STRATEGY)
    world.release("1.0.0")
    world.install_by_script("h4", "2.0.0")  # another tool put 2.0.0 there; healthy when the preflight reads it
    rid = world.start("2.0.0")

    async def down_after_the_preflight() -> ReleaseState:
        engine = await with_preflight_reads(world, rid, "2.0.0")
        (world.folders / "h4" / "running").unlink()
        return (await engine.drive(rid)).state

    assert asyncio.run(down_after_the_preflight()) is ReleaseState.SUCCEEDED
    run = {r.host: r for r in world.store.host_runs(rid)}["h4"]
    assert run.state is HostState.SKIPPED, run  # not `done` on a read from before it fell over
    assert "unhealthy before release" in (run.error or "")


def test_a_host_read_unhealthy_ahead_but_healthy_at_its_turn_is_released(make_world: Callable[..., World]) -> None:
    """A read ahead saves a round trip for a host that is fine; an unhealthy one is judged on a read of now (its
    app restarted since, or the read was wrong): a host is skipped only when it is unhealthy at its turn."""
    world = make_world(7, strategy=STRATEGY)
    world.release("1.0.0")
    rid = world.start("2.0.0")
    running = world.folders / "h5" / "running"
    running.unlink()  # down when the preflight reads it

    async def back_up_after_the_preflight() -> ReleaseState:
        engine = await with_preflight_reads(world, rid, "2.0.0")
        running.write_text("1.0.0\n")  # restarted by its owner
        return (await engine.drive(rid)).state

    before = surveys(world, "h5")
    assert asyncio.run(back_up_after_the_preflight()) is ReleaseState.SUCCEEDED
    assert world.states(rid)["h5"] is HostState.DONE and world.current("h5") == "2.0.0"
    assert "read_ahead_seconds" not in prechecks(world, rid)["h5"] and surveys(world, "h5") - before == 2
