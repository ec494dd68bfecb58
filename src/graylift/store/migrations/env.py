"""Alembic environment. ``Store.open`` passes an open connection in ``config.attributes["connection"]``;
a developer running the ``alembic`` tool passes ``-x url=...`` instead."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from graylift.store.tables import metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit(
            "pass the database with: alembic -c .../alembic.ini -x url=sqlite:///graylift.db ..."
        )
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations()
