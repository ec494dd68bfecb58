"""StepWrites: the steps hosts finish in one turn of the event loop are committed in one transaction, and
each caller goes on only once its own step is written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from graylift.core.model import Host
from graylift.engine.writes import StepWrites
from graylift.errors import LeaseLost
from graylift.store import Fence, Store
from graylift.store.runs import FinishStep

HOSTS = [Host(f"web-{i}", f"10.213.0.{i}") for i in range(1, 4)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'graylift.db'}")
    yield s
    s.close()


def started(store: Store) -> int:
    rec = store.create_release(app="order-service", env="prod", kind="release", version="2.4.1",
                               previous_version="2.4.0", plan={"batches": [[h.name for h in HOSTS]]}, config={},
                               started_by="alice", host_runs=[(h, 0, "2.4.0") for h in HOSTS])
    for host in HOSTS:
        store.begin_step(rec.id, host.name, "stop", {})
    return int(rec.id)


def counted(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each finish_steps transaction."""
    sizes: list[int] = []
    write = store.finish_steps

    def finish_steps(finishes: list[FinishStep]) -> object:
        sizes.append(len(finishes))
        return write(finishes)

    monkeypatch.setattr(store, "finish_steps", finish_steps)
    return sizes


async def test_steps_finished_in_one_turn_share_one_transaction(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = started(store)
    sizes = counted(store, monkeypatch)
    writes = StepWrites(store)
    runs = await asyncio.gather(*(
        writes.finish(FinishStep(store.host_run(rid, h.name), "stop", {}, then=("switch", {}))) for h in HOSTS))
    assert sizes == [3]
    assert list(runs) == [store.host_run(rid, h.name) for h in HOSTS]
    assert {(r.done_steps, r.step) for r in runs} == {(("stop",), "switch")}

    # one at a time (each waits for its own write): one transaction each
    for run in runs:
        await writes.finish(FinishStep(run, "switch", {}, then=("start", {})))
    assert sizes == [3, 1, 1, 1]
    assert [e.event for e in store.journal_entries(rid, "web-1")] == ["begin", "done", "begin", "done", "begin"]


async def test_a_failed_group_write_reaches_every_waiter_and_writes_nothing(store: Store) -> None:
    rid = started(store)
    fenced = store.fenced(Fence(rid, "controller-b", epoch=7))  # a lease this controller does not hold
    writes = StepWrites(fenced)
    results = await asyncio.gather(*(
        writes.finish(FinishStep(store.host_run(rid, h.name), "stop", {})) for h in HOSTS), return_exceptions=True)
    assert all(isinstance(r, LeaseLost) for r in results), results
    assert all(store.host_run(rid, h.name).done_steps == () for h in HOSTS)
    assert [e.event for e in store.journal_entries(rid)] == ["begin"] * 3


async def test_a_cancelled_caller_still_has_its_step_written(store: Store) -> None:
    rid = started(store)
    writes = StepWrites(store)
    task = asyncio.ensure_future(writes.finish(FinishStep(store.host_run(rid, "web-1"), "stop", {})))
    await asyncio.sleep(0)  # queued, the write scheduled
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert store.host_run(rid, "web-1").done_steps == ("stop",)
