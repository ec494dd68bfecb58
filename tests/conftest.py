"""Fixtures every test folder may use: throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL_TEMPLATE = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`, as scripts/test runs), the tests of one lab module stay on one
    worker (they share the module's fleet, brought up once); modules and the other tests spread over the
    workers. Two labs may run at once: each owns its own subnet slot, ports and state directory."""
    for item in items:
        if item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def _pg_unreachable_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'graylift[postgres]')"
    try:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL at 127.0.0.1:5432 (user postgres, db test): {str(exc).strip()}"


_PG_SKIP = _pg_unreachable_reason()


class PgDatabases:
    """Creates throwaway databases and drops every one of them at the end."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create(self) -> str:
        import psycopg

        name = f"graylift_test_{secrets.token_hex(6)}"
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name is ours: hex only
        self.created.append(name)
        return PG_URL_TEMPLATE.format(db=name)

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    if _PG_SKIP:
        pytest.skip(_PG_SKIP)
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


def kill_leftover_graylifts(under: str) -> list[str]:
    """SIGKILL every graylift process whose command line names a path under ``under`` (a test's tmp dir):
    detached workers (`release` without --wait) outlive a failed test otherwise. Returns their command lines."""
    import signal
    from pathlib import Path

    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a == "graylift" or a.endswith("/graylift") for a in argv) and any(under in a for a in argv):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(" ".join(argv).strip())
            except ProcessLookupError:
                pass
    return killed


@pytest.fixture(scope="session", autouse=True)
def _no_graylift_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session no graylift process started by a test may still run: they are killed and reported."""
    yield
    left = kill_leftover_graylifts(str(tmp_path_factory.getbasetemp()))
    if left:
        pytest.fail(f"{len(left)} graylift process(es) outlived the tests and were killed: {left}")
