"""The durable store against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from graylift.cli.render import PROGRESS, journal_line
from graylift.core.model import Host
from graylift.core.state import ReleaseState
from graylift.errors import (
    ConfigError,
    LeaseLost,
    ReleaseConflict,
    ReleaseNotFound,
    StateError,
    StoreError,
    StoreUnreachable,
    UsageError,
)
from graylift.journal_lines import Shown
from graylift.store import Fence, Store
from graylift.store.db import PG_IDLE_TX_MS, pg_connect_args
from graylift.store.records import host_from_json, host_to_json
from graylift.store.runs import FinishStep
from graylift.store.tables import metadata

H1 = Host("web-1", "10.213.0.1", port=2201, user="deploy", group="canary", tags={"zone": "a"})
H2 = Host("web-2", "10.213.0.2", tags={"zone": "b"})
H3 = Host("web-3", "10.213.0.3", in_service=False)


def new_release(
    store: Store,
    app: str = "order-service",
    env: str = "prod",
    version: str = "2.4.1",
    hosts: list[tuple[Host, int, str | None]] | None = None,
    **kw: Any,
) -> Any:
    runs = hosts if hosts is not None else [(H2, 1, "2.4.0"), (H1, 0, "2.4.0"), (H3, 1, None)]
    return store.create_release(
        app=app,
        env=env,
        kind=kw.get("kind", "release"),
        version=version,
        previous_version="2.4.0",
        plan={"batches": [["web-1"], ["web-2", "web-3"]]},
        config={"strategy": {"canary_count": 1}},
        started_by="alice",
        host_runs=runs,
    )


class FakeClock:
    def __init__(self) -> None:
        self.t = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


# ---------------------------------------------------------------- opening and schema
def test_open_creates_a_private_sqlite_directory_only_when_told_and_reopens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'dir' / 'graylift.db'}"
    with pytest.raises(StoreError, match=f"the directory {tmp_path / 'deep' / 'dir'} of the state database does not"):
        Store.open(url)
    assert not (tmp_path / "deep").exists()
    with Store.open(url, create_dir=True) as s:
        s.upsert_host("a", "prod", H1)
        db = tmp_path / "deep" / "dir" / "graylift.db"
        files = [db, db.with_name("graylift.db-wal"), db.with_name("graylift.db-shm")]
        assert all(f.exists() for f in files)
        assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}  # the inventory, journal, output
        assert oct(db.parent.stat().st_mode & 0o777) == "0o700"
    with Store.open(url) as s:  # migrating again is a no-op and keeps the data
        assert s.list_hosts("a", "prod") == [H1]


def test_an_existing_database_made_readable_by_others_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    with Store.open(f"sqlite:///{db}"):
        pass
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    with Store.open(url):
        pass
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_a_database_another_process_is_writing_while_it_turns_to_wal_is_waited_for(tmp_path: Path) -> None:
    """Turning a new database to WAL takes a write lock after a read lock, and SQLite gives up at once (no busy
    wait, lest two such connections deadlock) when another connection holds the write lock: processes opening
    one new database at once (CI, test_only_one_of_many_processes_starts_a_release) failed with 'database is
    locked'. Open waits instead."""
    db = tmp_path / "g.db"
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")  # a write lock, as another process turning it to WAL holds for a moment
    commit = threading.Timer(1.0, other.execute, ["COMMIT"])
    commit.start()
    try:
        with Store.open(f"sqlite:///{db}") as store:
            assert store.list_releases() == []
    finally:
        commit.join()
        other.close()


def test_migrations_match_the_tables_module(store: Store) -> None:
    engine = sa.create_engine(store.url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, metadata) == []
            assert ctx.get_current_revision() == "0005"
    finally:
        engine.dispose()


def test_a_host_spec_goes_to_json_and_back() -> None:
    data = host_to_json(H1)
    assert data == {"name": "web-1", "address": "10.213.0.1", "port": 2201, "user": "deploy", "group": "canary",
                    "tags": {"zone": "a"}, "in_service": True}
    assert data["tags"] is not H1.tags
    back = host_from_json({**data, "port": "2201", "tags": None, "unknown": "left out"})
    assert back == H1 and back.port == 2201 and back.tags == {}
    assert host_from_json(host_to_json(H3)) == H3 and host_from_json(host_to_json(H1)).tags == {"zone": "a"}


def test_open_reports_an_unreachable_database_without_traceback() -> None:
    with pytest.raises(StoreUnreachable) as info:  # the CLI's exit code 4
        Store.open("postgresql+psycopg://postgres:secret@127.0.0.1:1/nothing")
    assert "127.0.0.1:1" in str(info.value)
    assert "secret" not in str(info.value)



def test_a_database_server_that_accepts_but_never_answers_is_unreachable_after_the_connect_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A port that accepts connections and says nothing (a hung server, a proxy or firewall in between) held
    every command, `graylift status` too, without end: libpq waits for the server's greeting for ever unless
    told otherwise. graylift tells it PG_CONNECT_TIMEOUT_S (10 s; 2 here), and the URL's own
    ``connect_timeout`` wins."""
    import socket

    from graylift.store import db

    monkeypatch.setattr(db, "PG_CONNECT_TIMEOUT_S", 2)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in range(8)], daemon=True).start()
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{listener.getsockname()[1]}/graylift"
    try:
        for given in ("", "?connect_timeout=2"):
            started = time.monotonic()
            with pytest.raises(StoreUnreachable) as info:  # the CLI's exit code 4
                Store.open(url + given)
            assert time.monotonic() - started < 15 and held
            assert "timeout" in str(info.value) and "secret" not in str(info.value)
    finally:
        listener.close()
        for conn in held:
            conn.close()
    args = pg_connect_args(sa.make_url("postgresql+psycopg://u@db/g?connect_timeout=30"))
    assert "connect_timeout" not in args and args["keepalives_idle"] == "30"  # the URL's goes to libpq as it is

def test_open_reports_a_bad_url_and_an_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid"):  # a config error (exit 2), not an unreachable one
        Store.open("not a url")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is not a directory"):
        Store.open(f"sqlite:///{tmp_path / 'file' / 'graylift.db'}")
    with pytest.raises(ConfigError, match=r"only SQLite .* and PostgreSQL"):
        Store.open("mysql://root@127.0.0.1/test")


# ---------------------------------------------------------------- built-in inventory
def test_hosts_replace_list_upsert_remove(store: Store) -> None:
    store.replace_hosts("order-service", "prod", [H2, H1])
    store.replace_hosts("order-service", "beta", [H3])
    assert store.list_hosts("order-service", "prod") == [H1, H2]
    got = store.list_hosts("order-service", "prod")[0]
    assert (got.port, got.user, got.group, got.tags, got.in_service) == (
        2201,
        "deploy",
        "canary",
        {"zone": "a"},
        True,
    )

    store.replace_hosts("order-service", "prod", [H3])  # an import replaces the whole list
    assert store.list_hosts("order-service", "prod") == [H3]
    store.upsert_host("order-service", "prod", H1)
    store.upsert_host("order-service", "prod", Host("web-1", "10.213.0.9", tags={"zone": "c"}))
    hosts = store.list_hosts("order-service", "prod")
    assert [(h.name, h.address, h.zone) for h in hosts] == [
        ("web-1", "10.213.0.9", "c"),
        ("web-3", "10.213.0.3", ""),
    ]
    store.remove_host("order-service", "prod", "web-3")
    assert [h.name for h in store.list_hosts("order-service", "prod")] == ["web-1"]
    with pytest.raises(UsageError, match="web-3"):
        store.remove_host("order-service", "prod", "web-3")
    assert store.list_app_envs() == [("order-service", "beta", 1), ("order-service", "prod", 1)]


def test_set_in_service(store: Store) -> None:
    store.replace_hosts("a", "prod", [H1, H2])
    store.set_in_service("a", "prod", "web-2", False)
    assert [h.in_service for h in store.list_hosts("a", "prod")] == [True, False]
    with pytest.raises(UsageError, match="web-9"):
        store.set_in_service("a", "prod", "web-9", True)


def test_replace_hosts_rejects_duplicates_and_keeps_the_old_list(store: Store) -> None:
    store.replace_hosts("a", "prod", [H1])
    with pytest.raises(UsageError, match="web-2 appears twice"):
        store.replace_hosts("a", "prod", [H2, H2])
    assert store.list_hosts("a", "prod") == [H1]


# ---------------------------------------------------------------- releases
def test_create_release_records_plan_and_host_runs(store: Store) -> None:
    rec = new_release(store)
    assert (rec.app, rec.env, rec.kind, rec.version, rec.previous_version) == (
        "order-service",
        "prod",
        "release",
        "2.4.1",
        "2.4.0",
    )
    assert (rec.state, rec.cursor, rec.phase, rec.requested, rec.owner, rec.finished_at) == (
        "pending",
        0,
        "",
        None,
        None,
        None,
    )
    assert rec.plan == {"batches": [["web-1"], ["web-2", "web-3"]]}
    assert rec.config == {"strategy": {"canary_count": 1}}
    assert rec.created_at.tzinfo is UTC and rec.started_by == "alice"
    runs = store.host_runs(rec.id)
    assert [(r.host, r.batch, r.previous_version) for r in runs] == [
        ("web-1", 0, "2.4.0"),
        ("web-2", 1, "2.4.0"),
        ("web-3", 1, None),
    ]
    assert all(r.state == "pending" and r.target_version == "2.4.1" and r.done_steps == () for r in runs)
    assert runs[0].spec == H1 and runs[0].spec is not None and runs[0].spec.tags == {"zone": "a"}
    assert store.get_release(rec.id) == rec
    assert store.active_release("order-service", "prod") == rec
    assert store.active_releases() == [rec]


def test_second_active_release_conflicts_until_the_first_finishes(store: Store) -> None:
    first = new_release(store)
    with pytest.raises(ReleaseConflict) as info:
        new_release(store, version="2.4.2")
    assert str(info.value) == (
        f"release #{first.id} of order-service 2.4.1 (prod) is running (state pending); "
        f"wait for it, or `graylift abort {first.id}`"
    )
    assert len(store.list_releases()) == 1  # the refused one left nothing behind
    other_env = new_release(store, env="beta")
    assert other_env.id != first.id

    done = store.finish_release(first.id, "succeeded", "all 3 hosts on 2.4.1")
    assert done.state == "succeeded" and done.finished_at is not None and done.finished
    assert store.active_release("order-service", "prod") is None
    second = new_release(store, version="2.4.2", kind="rollback")
    assert second.kind == "rollback"
    assert [r.id for r in store.active_releases()] == [other_env.id, second.id]


def test_get_release_missing(store: Store) -> None:
    with pytest.raises(ReleaseNotFound, match="#999"):
        store.get_release(999)
    with pytest.raises(ReleaseNotFound):
        store.update_release(999, phase="batch 1")
    with pytest.raises(ReleaseNotFound):
        store.transition(999, ReleaseState.RUNNING)


def test_the_state_changes_only_through_a_checked_transition(store: Store) -> None:
    rec = new_release(store)
    with pytest.raises(TypeError, match="cannot set"):
        store.update_release(rec.id, state="succeeded")
    with pytest.raises(StateError, match="cannot become succeeded"):
        store.transition(rec.id, ReleaseState.SUCCEEDED)
    moved = store.transition(rec.id, ReleaseState.RUNNING, "started")
    assert moved.state is ReleaseState.RUNNING
    assert [(e.step, e.event, e.detail["from"]) for e in store.journal_entries(rec.id)] == [
        ("release", "running", "pending")]
    with pytest.raises(StateError, match="became running meanwhile"):
        store.transition(rec.id, ReleaseState.PAUSED, expect=ReleaseState.PENDING)
    with pytest.raises(StateError, match="cannot become done"):
        store.update_host_run(rec.id, "web-1", state="done")  # pending hosts run first


def test_update_release_and_utc_timestamps(store: Store) -> None:
    rec = new_release(store)
    shanghai = timezone(timedelta(hours=8))
    wake = datetime(2030, 5, 1, 20, 30, 15, 123456, tzinfo=shanghai)
    upd = store.update_release(
        rec.id,
        cursor=1,
        phase="bake",
        wait_until=wake,
        message="baking until 12:30",
        plan={"batches": [], "v": 2},
    )
    assert (upd.state, upd.cursor, upd.phase, upd.message, upd.plan) == (
        "pending",
        1,
        "bake",
        "baking until 12:30",
        {"batches": [], "v": 2},
    )
    assert (
        upd.wait_until == wake and upd.wait_until is not None and upd.wait_until.utcoffset() == timedelta(0)
    )
    assert upd.wait_until.hour == 12
    assert upd.updated_at >= rec.updated_at
    assert store.update_release(rec.id, wait_until=None).wait_until is None
    with pytest.raises(StoreError, match="no timezone"):
        store.update_release(rec.id, wait_until=datetime(2030, 1, 1))
    with pytest.raises(TypeError, match="owner"):
        store.update_release(rec.id, owner="x")


def test_list_releases_newest_first_with_filters(store: Store) -> None:
    ids = []
    for app, env in [("a", "prod"), ("b", "prod"), ("a", "beta"), ("a", "prod")]:
        prev = store.active_release(app, env)
        if prev:
            store.finish_release(prev.id, "succeeded", "")
        ids.append(new_release(store, app=app, env=env).id)
    assert [r.id for r in store.list_releases()] == ids[::-1]
    assert [r.id for r in store.list_releases(app="a")] == [ids[3], ids[2], ids[0]]
    assert [r.id for r in store.list_releases(app="a", env="prod")] == [ids[3], ids[0]]
    assert [r.id for r in store.list_releases(env="prod", limit=2)] == [ids[3], ids[1]]


def test_requests(store: Store) -> None:
    rec = new_release(store)
    store.request(rec.id, "pause")
    assert store.get_release(rec.id).requested == "pause"
    store.request(rec.id, "abort")
    assert store.get_release(rec.id).requested == "abort"
    store.clear_request(rec.id)
    assert store.get_release(rec.id).requested is None
    with pytest.raises(StateError, match="unknown request"):
        store.request(rec.id, "explode")
    with pytest.raises(ReleaseNotFound):
        store.request(12345, "pause")
    store.finish_release(rec.id, "aborted", "aborted by bob")
    with pytest.raises(StateError, match="has finished"):
        store.request(rec.id, "resume")


def test_lease_claim_heartbeat_release_sqlite(tmp_path: Path) -> None:
    clock = FakeClock()
    with Store.open(f"sqlite:///{tmp_path / 'g.db'}", now=clock) as store:
        rec = new_release(store)
        assert store.claim(rec.id, "ctl-a", stale_after=30) == 1
        assert store.claim(rec.id, "ctl-a", stale_after=30) == 2  # ours already: a new epoch all the same
        assert store.claim(rec.id, "ctl-b", stale_after=30) is None
        a = Fence(rec.id, "ctl-a", 2)
        clock.t += timedelta(seconds=20)
        assert store.heartbeat(a)
        clock.t += timedelta(seconds=20)
        assert store.claim(rec.id, "ctl-b", stale_after=30) is None  # heartbeat 20 s old: still fresh
        clock.t += timedelta(seconds=11)
        assert store.claim(rec.id, "ctl-b", stale_after=30) == 3  # 31 s old: stale, taken over
        got = store.get_release(rec.id)
        assert got.owner == "ctl-b" and got.heartbeat_at == clock.t and got.lease_epoch == 3
        assert not store.heartbeat(a)  # a's lease is gone
        store.release_lease(a)  # not a's to release: no effect
        assert store.get_release(rec.id).owner == "ctl-b"
        store.release_lease(Fence(rec.id, "ctl-b", 3))
        assert store.get_release(rec.id).owner is None
        assert store.claim(rec.id, "ctl-a", stale_after=30) == 4
        store.finish_release(rec.id, "succeeded", "")
        assert store.claim(rec.id, "ctl-a", stale_after=30) is None  # nothing to run
        claims = [(e.owner, e.epoch) for e in store.journal_entries(rec.id) if e.event == "claimed"]
        assert claims == [("ctl-a", 1), ("ctl-a", 2), ("ctl-b", 3), ("ctl-a", 4)]


def test_every_write_of_a_fenced_store_fails_once_another_controller_holds_the_lease(store: Store) -> None:
    rec = new_release(store)
    epoch = store.claim(rec.id, "ctl-a", stale_after=30)
    assert epoch is not None
    a = store.fenced(Fence(rec.id, "ctl-a", epoch))
    a.journal(rec.id, "web-1", "stage", "begin", {})
    a.update_host_run(rec.id, "web-1", step="stage")
    assert store.claim(rec.id, "ctl-b", stale_after=0) == epoch + 1  # b takes over (a looked dead)
    for write in (lambda: a.journal(rec.id, "web-1", "stage", "done", {}),
                  lambda: a.update_host_run(rec.id, "web-1", step="mute"),
                  lambda: a.finish_step(store.host_run(rec.id, "web-1"), "stage", {}),
                  lambda: a.update_release(rec.id, phase="x"),
                  lambda: a.transition(rec.id, ReleaseState.RUNNING, "started")):
        with pytest.raises(LeaseLost, match="ctl-b"):
            write()
    assert store.host_run(rec.id, "web-1").step == "stage"  # nothing a wrote after losing the lease
    signed = [(e.owner, e.epoch) for e in store.journal_entries(rec.id) if e.host == "web-1"]
    assert signed == [("ctl-a", epoch)]


def test_a_fence_whose_holder_knows_it_lost_the_lease_writes_nothing(store: Store) -> None:
    rec = new_release(store)
    epoch = store.claim(rec.id, "ctl-a", stale_after=30)
    assert epoch is not None

    def lost() -> None:
        raise LeaseLost("another controller took the lease over")

    a = store.fenced(Fence(rec.id, "ctl-a", epoch, lost))
    with pytest.raises(LeaseLost, match="took the lease over"):
        a.journal(rec.id, "web-1", "stage", "begin", {})
    assert store.journal_entries(rec.id, "web-1") == []


@pytest.mark.postgres
def test_lease_ages_are_judged_on_the_database_clock(pg_databases: Any) -> None:
    """A controller whose own clock is an hour ahead cannot declare a fresh lease stale."""
    url = pg_databases.create()
    ahead = FakeClock()
    ahead.t = datetime.now(UTC) + timedelta(hours=1)
    with Store.open(url) as honest, Store.open(url, now=ahead) as skewed:
        rec = new_release(honest)
        assert honest.claim(rec.id, "ctl-a", stale_after=10) == 1
        assert skewed.claim(rec.id, "ctl-b", stale_after=10) is None
        assert skewed.get_release(rec.id).owner == "ctl-a"


@pytest.mark.postgres
def test_a_session_frozen_in_a_pipeline_does_not_block_a_takeover(pg_databases: Any) -> None:
    """A controller frozen (SIGSTOP, a paused VM) in a transaction just after a pipeline's Flush (psycopg sends
    an executemany as a pipeline) keeps its transaction, and the release's row lock, for good: PostgreSQL stops
    its idle-in-transaction timer at any message and starts it again only at a Sync. Seen in CI: the session
    "idle in transaction" 19 s, the takeover's claim failing on the lock. Claiming a stale lease now ends such
    a session first."""

    import psycopg

    url = pg_databases.create()
    with Store.open(url) as store:
        rec = new_release(store)
        assert store.claim(rec.id, "ctl-a", stale_after=30) == 1
        dsn = sa.make_url(url)
        frozen = psycopg.connect(host=dsn.host, port=dsn.port, user=dsn.username, dbname=dsn.database,
                                 **pg_connect_args())
        frozen.execute("SELECT id FROM releases WHERE id = %s FOR UPDATE", (rec.id,))  # a fenced write's start
        frozen.pgconn.enter_pipeline_mode()  # then a Flush, and nothing more
        frozen.pgconn.send_flush_request()
        frozen.pgconn.flush()
        pid = frozen.info.backend_pid
        time.sleep(PG_IDLE_TX_MS / 1000 + 1)
        with psycopg.connect(host=dsn.host, port=dsn.port, user=dsn.username, dbname=dsn.database) as look:
            def state() -> str | None:
                row = look.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                look.commit()
                return row[0] if row else None

            assert state() == "idle in transaction"  # past the server's own timeout, still there
            assert store.claim(rec.id, "ctl-b", stale_after=3600) is None  # a fresh lease: nothing is ended
            assert state() == "idle in transaction"
            assert store.claim(rec.id, "ctl-b", stale_after=0) == 2
            deadline = time.monotonic() + 5  # its lock is freed a moment before its process is gone
            while state() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert state() is None
        claimed = [e for e in store.journal_entries(rec.id) if e.event == "claimed"][-1]
        assert (claimed.owner, claimed.detail["ended_sessions"]) == ("ctl-b", [pid])
        frozen.close()


# ---------------------------------------------------------------- host runs
def test_host_run_steps(store: Store) -> None:
    rec = new_release(store)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    store.update_host_run(rec.id, "web-1", state="running", step="take_out", started_at=t0)
    run = store.host_run(rec.id, "web-1")
    assert (run.state, run.step, run.started_at) == ("running", "take_out", t0)
    store.begin_step(rec.id, "web-1", "take_out", {"version": "2.4.1"})
    run = store.finish_step(run, "take_out", {"out_of": ["lb"]}, then=("stop", {"version": "2.4.1"}))
    run = store.finish_step(run, "stop", {})
    run = store.finish_step(run, "take_out", {})  # no duplicate
    assert run.done_steps == ("take_out", "stop") and run == store.host_run(rec.id, "web-1")
    assert [(e.step, e.event) for e in store.journal_entries(rec.id, "web-1")] == [
        ("take_out", "begin"), ("take_out", "done"), ("stop", "begin"), ("stop", "done"), ("take_out", "done")]
    # the summary's read (`render_release`): only the rows of its steps and event, in write order
    assert [(e.step, e.detail) for e in store.journal_entries(rec.id, steps=("take_out", "quiet"), event="done")] == [
        ("take_out", {"out_of": ["lb"]}), ("take_out", {})]
    assert [e.event for e in store.journal_entries(rec.id, steps=("stop",))] == ["begin", "done"]
    store.update_host_run(rec.id, "web-1", state="failed", error="health check failed", finished_at=t0)
    run = store.host_run(rec.id, "web-1")
    assert (run.state, run.error, run.finished_at) == ("failed", "health check failed", t0)

    store.reset_host_run(rec.id, "web-1", target_version="2.4.0", state="pending")
    run = store.host_run(rec.id, "web-1")
    assert (run.state, run.target_version, run.done_steps, run.error, run.step, run.started_at) == (
        "pending",
        "2.4.0",
        (),
        None,
        None,
        None,
    )
    assert run.previous_version == "2.4.0"
    assert store.host_run(rec.id, "web-2").done_steps == ()
    with pytest.raises(StoreError, match="web-9"):
        store.host_run(rec.id, "web-9")
    with pytest.raises(StoreError, match="web-9"):
        store.begin_step(rec.id, "web-9", "stop", {})
    with pytest.raises(TypeError):
        store.update_host_run(rec.id, "web-1", done_steps=["x"])


def test_finish_step_writes_its_entries_in_order_with_the_row(store: Store) -> None:
    """A host already on the target: precheck done, the skipped steps counted done, the next step begun;
    the journal holds the three entries in that order, and the row the done steps."""
    rec = new_release(store)
    store.begin_step(rec.id, "web-1", "precheck", {})
    run = store.host_run(rec.id, "web-1")
    run = store.finish_step(run, "precheck", {"current": "2.4.1"}, skipped=["stage", "stop", "start"],
                            then=("put_back", {"version": "2.4.1"}))
    assert run == store.host_run(rec.id, "web-1")
    assert run.done_steps == ("precheck", "stage", "stop", "start") and run.step == "put_back"
    entries = store.journal_entries(rec.id, "web-1")
    assert [(e.step, e.event) for e in entries] == [
        ("precheck", "begin"), ("precheck", "done"), ("precheck", "already_on_target"), ("put_back", "begin")]
    assert entries[2].detail == {"version": "2.4.1", "skipped": ["stage", "stop", "start"]}
    assert entries[3].detail == {"version": "2.4.1"}


def test_finish_steps_writes_several_hosts_in_one_transaction_or_none(store: Store) -> None:
    rec = new_release(store)
    for host in ("web-1", "web-2"):
        store.begin_step(rec.id, host, "stop", {})
    one, two = store.host_run(rec.id, "web-1"), store.host_run(rec.id, "web-2")
    written = store.finish_steps([FinishStep(one, "stop", {"stopped": "a"}, then=("switch", {})),
                                  FinishStep(two, "stop", {"stopped": "b"})])
    assert written == [store.host_run(rec.id, "web-1"), store.host_run(rec.id, "web-2")]
    assert [(w.done_steps, w.step) for w in written] == [(("stop",), "switch"), (("stop",), "stop")]
    assert [(e.host, e.step, e.event) for e in store.journal_entries(rec.id)][-3:] == [
        ("web-1", "stop", "done"), ("web-1", "switch", "begin"), ("web-2", "stop", "done")]

    # a host not in the release: named, and nothing of the others written either
    stranger = replace(two, host="web-9")
    entries = len(store.journal_entries(rec.id))
    with pytest.raises(StoreError, match=r"host web-9 is not part of release"):
        store.finish_steps([FinishStep(written[0], "switch", {}), FinishStep(stranger, "switch", {})])
    assert store.host_run(rec.id, "web-1").done_steps == ("stop",)
    assert len(store.journal_entries(rec.id)) == entries


# ---------------------------------------------------------------- journal and versions
def test_journal(store: Store) -> None:
    rec = new_release(store)
    store.journal(rec.id, None, "plan", "created", {"batches": 2})
    store.journal(rec.id, "web-1", "stop", "start")
    store.journal(rec.id, "web-1", "stop", "done", {"took": 1.5, "out": "ü ok"})
    store.journal(rec.id, "web-2", "stop", "start")
    entries = store.journal_entries(rec.id)
    assert [(e.host, e.step, e.event) for e in entries] == [
        (None, "plan", "created"),
        ("web-1", "stop", "start"),
        ("web-1", "stop", "done"),
        ("web-2", "stop", "start"),
    ]
    assert entries[0].detail == {"batches": 2} and entries[1].detail == {}
    assert entries[2].detail == {"took": 1.5, "out": "ü ok"}
    assert all(e.at.tzinfo is UTC and e.release_id == rec.id for e in entries)
    assert [e.event for e in store.journal_entries(rec.id, host="web-1")] == ["start", "done"]
    assert [e.host for e in store.journal_entries(rec.id, since_id=entries[1].id)] == ["web-1", "web-2"]
    assert store.journal_entries(rec.id, since_id=entries[-1].id) == []


def test_deployed_versions(store: Store) -> None:
    assert store.current_version("order-service", "prod") is None
    rec = new_release(store)
    store.record_deployed("order-service", "prod", "2.4.0", rec.id)
    store.record_deployed("order-service", "prod", "2.4.1", rec.id)
    store.record_deployed("order-service", "beta", "9.9", rec.id)
    assert [v.version for v in store.deployed_versions("order-service", "prod")] == ["2.4.1", "2.4.0"]
    assert store.current_version("order-service", "prod") == "2.4.1"
    v = store.deployed_versions("order-service", "beta")[0]
    assert (v.app, v.env, v.release_id, v.at.tzinfo) == ("order-service", "beta", rec.id, UTC)


def test_the_current_version_and_a_versions_sha256_are_the_newest_records_of_a_long_history(store: Store) -> None:
    rec = new_release(store)
    for n in range(300):  # a release many times a day, and rollbacks (recorded without a sha256)
        store.record_deployed("order-service", "prod", f"1.{n}", rec.id, sha256=f"{n:064x}")
        store.record_deployed("order-service", "prod", f"1.{n // 2}", rec.id, source="rollback")
    store.record_deployed("order-service", "beta", "1.7", rec.id, sha256="b" * 64)
    assert store.current_version("order-service", "prod") == "1.149"
    assert store.current_version("order-service", "test") is None
    assert store.deployed_sha256("order-service", "prod", "1.149") == f"{149:064x}"
    assert store.deployed_sha256("order-service", "prod", "1.7") == f"{7:064x}"  # not beta's, not a rollback's None
    assert store.deployed_sha256("order-service", "prod", "9.9") is None
    store.record_deployed("order-service", "prod", "1.7", rec.id, sha256="c" * 64)  # rebuilt and released again
    assert store.deployed_sha256("order-service", "prod", "1.7") == "c" * 64
    assert store.current_version("order-service", "prod") == "1.7"


def test_two_stores_on_one_database_see_each_other(open_store: Callable[[], Store]) -> None:
    a, b = open_store(), open_store()
    rec = new_release(a)
    b.request(rec.id, "promote")
    assert a.get_release(rec.id).requested == "promote"
    with pytest.raises(ReleaseConflict):
        new_release(b)


def claim_tokens(store: Store) -> list[int]:
    """Claims of three releases (of other apps), in turn: each epoch is the host-side fencing token."""
    recs = [new_release(store, app=f"app-{i}") for i in range(3)]
    tokens = []
    for rec in recs + recs:
        epoch = store.claim(rec.id, f"ctl-{rec.id}", stale_after=0)
        assert epoch is not None
        tokens.append(epoch)
    return tokens


def test_every_claim_gets_a_token_greater_than_every_earlier_one_sqlite(tmp_path: Path) -> None:
    """A host refuses a command whose token is lower than the last it saw (docs/safety.md): a doctor's repair
    under an older release, or any takeover, must outrank every lease that touched the host before."""
    with Store.open(f"sqlite:///{tmp_path / 'g.db'}") as store:
        tokens = claim_tokens(store)
    assert tokens == sorted(set(tokens)), tokens


@pytest.mark.postgres
def test_every_claim_gets_a_token_greater_than_every_earlier_one_postgres(pg_databases: Any) -> None:
    import concurrent.futures

    url = pg_databases.create()
    with Store.open(url) as store:
        tokens = claim_tokens(store)
        assert tokens == sorted(set(tokens)), tokens
        recs = [new_release(store, app=f"many-{i}") for i in range(16)]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:  # claims at once, each on its own session
            at_once = list(pool.map(lambda r: store.claim(r.id, f"ctl-{r.id}", stale_after=0), recs))
    assert None not in at_once and len(set(at_once)) == len(at_once) and min(at_once) > max(tokens), at_once


def test_journal_shown_is_filtered_in_sql_as_the_view_filters(store: Store) -> None:
    """A progress view reads back only the entries it may show (``shown``, in SQL), and exactly those: the same
    entries, in the same order, as the view's own test of every entry; ``since_id`` still counts."""
    rec = new_release(store)
    steps = ("precheck", "mute", "take_out", "quiet", "stop", "start", "health", "put_back", "unmute", "revert")
    events = ("begin", "done", "failed", "needs_attention", "plan", "already_on_target")
    for host in (None, "web-1", "web-2"):
        for step in steps:
            for event in events:
                store.journal(rec.id, host, step, event, {"n": f"{host}/{step}/{event}"})
    every = store.journal_entries(rec.id)
    assert len(every) == 3 * len(steps) * len(events)
    for view in (PROGRESS, Shown(), Shown(events=frozenset({"failed"})), Shown(steps=frozenset({("quiet", "done")}))):
        read = store.journal_entries(rec.id, shown=view)
        assert read == [e for e in every if e in view]
        middle = read[len(read) // 2].id
        assert store.journal_entries(rec.id, since_id=middle, shown=view) == [e for e in read if e.id > middle]
    assert [e.host for e in store.journal_entries(rec.id, shown=Shown())] == [None] * len(steps) * len(events)
    # the CLI's progress view shows nothing it did not read: every line it prints is of an entry in PROGRESS
    assert {e.id for e in every if journal_line(e) is not None} <= {e.id for e in every if e in PROGRESS}
    # of a host's 60 entries here: its 3 x 10 failures, attention and already-on-target, and 4 (step, event) pairs
    assert sum(e.host is not None for e in store.journal_entries(rec.id, shown=PROGRESS)) == 2 * (3 * 10 + 4)


def test_a_host_runs_state_and_its_attention_mark_change_together(store: Store) -> None:
    rec = new_release(store)
    store.mark_needs_attention("order-service", "prod", "web-1", reason="x", backends={}, release_id=rec.id)
    store.mark_needs_attention("order-service", "prod", "web-2", reason="x", backends={}, release_id=rec.id)
    with pytest.raises(StateError):  # pending -> rolled_back is no transition: nothing of it is written
        store.update_host_run(rec.id, "web-1", state="rolled_back", forget_attention=("order-service", "prod"))
    assert set(store.host_health("order-service", "prod")) == {"web-1", "web-2"}
    store.update_host_run(rec.id, "web-1", state="running")
    store.update_host_run(rec.id, "web-1", state="done", forget_attention=("order-service", "prod"))
    assert set(store.host_health("order-service", "prod")) == {"web-2"}
    assert store.host_run(rec.id, "web-1").state == "done"
