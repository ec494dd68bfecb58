"""Fixtures every test folder may use: throwaway PostgreSQL databases."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL_TEMPLATE = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


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
