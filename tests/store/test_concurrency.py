"""Several graylift processes on one database: the database, not the process, keeps the rules."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from graylift.core.model import Host
from graylift.store import Store

WORKER = Path(__file__).with_name("race_worker.py")
PROCS = 6


def race(url: str, action: str, args: list[str]) -> list[str]:
    """Start one process per arg, all acting at the same instant; return each one's output line."""
    start = time.time() + 2.5  # time enough for every interpreter to import sqlalchemy
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, f"{start}", action, arg],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arg in args
    ]
    done = [p.communicate(timeout=120) for p in procs]  # every one reaped before any is judged
    for p, (_, err) in zip(procs, done, strict=True):
        assert p.returncode == 0, err
    return [out.strip() for out, _ in done]


@pytest.mark.slow
def test_concurrent_first_open_migrates_once(store_url: str) -> None:
    assert race(store_url, "open", [""] * PROCS) == ["opened"] * PROCS


@pytest.mark.slow
def test_only_one_of_many_processes_starts_a_release(store_url: str) -> None:
    outs = race(store_url, "create", [f"1.0.{i}" for i in range(PROCS)])
    created = [o for o in outs if o.startswith("created")]
    conflicts = [o for o in outs if o.startswith("conflict")]
    assert len(created) == 1 and len(conflicts) == PROCS - 1, outs
    winner = int(created[0].split()[1])
    with Store.open(store_url) as store:
        assert len(store.list_releases()) == 1
        assert store.active_release("order-service", "prod").id == winner  # type: ignore[union-attr]
        for c in conflicts:
            assert f"release #{winner} of order-service" in c and f"graylift abort {winner}" in c


@pytest.mark.slow
def test_only_one_of_many_processes_claims_the_lease(store_url: str) -> None:
    with Store.open(store_url) as store:
        rec = store.create_release(
            app="a",
            env="prod",
            kind="release",
            version="1",
            previous_version=None,
            plan={},
            config={},
            started_by="t",
            host_runs=[(Host("h1", "10.213.0.1"), 0, None)],
        )
    outs = race(store_url, "claim", [str(rec.id)] * PROCS)
    assert sorted(outs) == ["claimed"] + ["refused"] * (PROCS - 1)


@pytest.mark.slow
def test_concurrent_journal_writers_lose_nothing(store_url: str) -> None:
    with Store.open(store_url) as store:
        rec = store.create_release(
            app="a",
            env="prod",
            kind="release",
            version="1",
            previous_version=None,
            plan={},
            config={},
            started_by="t",
            host_runs=[(Host("h1", "10.213.0.1"), 0, None)],
        )
        outs = race(store_url, "journal", [str(rec.id)] * 4)
        assert outs == ["journaled"] * 4
        entries = store.journal_entries(rec.id)
        assert len(entries) == 800
        assert [e.id for e in entries] == sorted(e.id for e in entries)


def test_journal_write_rate(store: Store) -> None:
    """A 200-host release writes ~5,000 entries; each is its own committed transaction."""
    rec = store.create_release(
        app="a",
        env="prod",
        kind="release",
        version="1",
        previous_version=None,
        plan={},
        config={},
        started_by="t",
        host_runs=[],
    )
    n = 1000
    t0 = time.perf_counter()
    for i in range(n):
        store.journal(rec.id, f"h{i % 200}", "deploy", "done", {"i": i})
    rate = n / (time.perf_counter() - t0)
    print(f"\n{store.url.get_backend_name()}: {rate:,.0f} journal writes/s")
    assert rate > 100
    assert len(store.journal_entries(rec.id)) == n
