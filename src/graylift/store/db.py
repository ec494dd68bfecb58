"""Opening the state database: engines, SQLite pragmas, private files, migrations.

SQLite (one file, the default) or PostgreSQL. A SQLite database holds the inventory, the journal and command
output: its directory is made 0700 and its file 0600 before SQLite opens it (SQLite gives its -wal and -shm
files the database file's mode).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from graylift.errors import ConfigError, StoreUnreachable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_LOCK_TIMEOUT_MS = 5_000
PG_CONNECT_TIMEOUT_S = 10  # a server that accepts and never answers
PG_IDLE_TX_MS = 5_000  # well inside the lease's stale window (engine.lease.STALE_AFTER_SECONDS)
APPLICATION_NAME = "graylift"  # every graylift session on PostgreSQL, as pg_stat_activity shows it
_PG_MIGRATION_LOCK = 0x6772_6C66  # "grlf": serialises concurrent `Store.open` migrations on PostgreSQL
SUPPORTED = ("sqlite", "postgresql")


def make_engines(url: URL, *, create_dir: bool) -> tuple[sa.Engine, sa.Engine]:
    """(write engine, read engine). On a SQLite file they differ only in how a transaction begins."""
    backend = url.get_backend_name()
    if backend not in SUPPORTED:
        raise ConfigError(f"state database {url.render_as_string(hide_password=True)}: only SQLite "
                          "(sqlite:///path) and PostgreSQL (postgresql+psycopg://...) are supported")
    if backend != "sqlite":
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=pg_connect_args(url))
        return engine, engine
    database = url.database or ""
    if database in ("", ":memory:"):
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        _sqlite_setup(engine, begin="BEGIN IMMEDIATE", wal=False)
        return engine, engine
    if not database.startswith("file:"):
        path = Path(database).expanduser()
        private_file(path, create_dir=create_dir)
        url = url.set(database=str(path))
    args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    write = sa.create_engine(url, connect_args=args)
    read = sa.create_engine(url, connect_args=args)
    _sqlite_setup(write, begin="BEGIN IMMEDIATE", wal=True)
    _sqlite_setup(read, begin="BEGIN", wal=True)
    return write, read


def pg_connect_args(url: URL | None = None) -> dict[str, str]:
    """How every graylift session on PostgreSQL starts. A controller frozen (SIGSTOP, a VM pause) inside a
    transaction must not hold the release's row lock past the lease's stale window: the server ends a session
    idle in a transaction, and nobody waits on a lock forever. The server cannot end one frozen just after a
    pipeline's Flush (its timer stops at any message and starts again only at a Sync): the claim of a stale
    lease ends those (:meth:`graylift.store.Store.claim`), found by the application name.

    On the client's side: a server that accepts the connection and never answers (hung, or a proxy in front
    of a dead one) is given up after PG_CONNECT_TIMEOUT_S (libpq waits for ever by default), and a server gone
    mid-session (its machine off, the network cut) is found by TCP keepalives within about a minute, not the
    system's two hours. What the URL's query sets itself (``?connect_timeout=3``) is left as it is."""
    args = {"options": f"-c lock_timeout={PG_LOCK_TIMEOUT_MS} -c idle_in_transaction_session_timeout={PG_IDLE_TX_MS}",
            "application_name": APPLICATION_NAME}
    given = url.query if url is not None else {}
    defaults = {"connect_timeout": str(PG_CONNECT_TIMEOUT_S), "keepalives": "1", "keepalives_idle": "30",
                "keepalives_interval": "10", "keepalives_count": "3"}
    return args | {key: value for key, value in defaults.items() if key not in given}


def private_file(path: Path, *, create_dir: bool) -> None:
    """Make ``path`` exist as a 0600 file in a directory only its owner can enter (made 0700 if created).

    A missing directory is made only when ``create_dir``; otherwise it is an error naming it.
    """
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise StoreUnreachable(f"cannot open state database {path}: {parent} is not a directory")
    if not parent.is_dir():
        if not create_dir:
            raise StoreUnreachable(f"the directory {parent} of the state database does not exist; create it "
                                   f"(mkdir -m 700 {parent}) or point `state:` / GRAYLIFT_DB elsewhere")
        parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # made by an older graylift, or by hand
    except OSError as exc:
        raise StoreUnreachable(f"cannot open state database {path}: {exc.strerror or exc}") from None


def head_revision() -> str:
    """The newest migration, read from the file names (``NNNN_name.py`` holds revision ``NNNN``) without
    importing Alembic; a test checks it against Alembic's own head."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))


def is_current(engine: sa.Engine) -> bool:
    """The schema is at the newest migration already (most opens): Alembic need not even be imported."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return False
        found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return found == [head_revision()]


def migrate(engine: sa.Engine) -> None:
    if is_current(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _sqlite_setup(engine: sa.Engine, *, begin: str, wal: bool) -> None:
    """Pragmas per connection, and our own BEGIN (pysqlite's implicit transactions are switched off)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                _turn_to_wal(cur)
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin)


def _turn_to_wal(cur: Any) -> None:
    """WAL mode is written into the file once. Turning a new database to it takes a write lock while holding a
    read lock, and SQLite answers 'database is locked' at once, without its busy wait (two such connections would
    deadlock), when another connection holds the write lock: several processes opening one new database at once.
    That answer is waited out here, up to the busy timeout, as every other lock is."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.1)


def short(exc: BaseException) -> str:
    """A one-line reason: the driver's message without SQLAlchemy's statement dump and help link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
