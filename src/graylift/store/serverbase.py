"""What the server's stores (:mod:`.accounts`, :mod:`.queries`) share: opening one over an open store, the
errors of the accounts, and the filters of their lists (the values given, newest first below an id, only what
a reader may see)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Self, TypeVar

import sqlalchemy as sa

from graylift.errors import GrayliftError
from graylift.store.base import StoreBase

ANY = "*"

R = TypeVar("R")

Visible = list[tuple[str, str]]
"""(app pattern, env pattern) pairs a reader may see; ``*`` matches all."""


class AccountError(GrayliftError):
    """A user, token, request or webhook already exists, or cannot be changed so."""


class Missing(AccountError):
    """A user, token, request, webhook or freeze window that does not exist."""


class ServerStore(StoreBase):
    @classmethod
    def of(cls, store: StoreBase) -> Self:
        """The server's tables of the same database, over the store's own engines."""
        return cls(store.url, store._write_engine, store._read_engine, store._now)

    def now(self) -> datetime:
        return self._now()

    def newest(self, record: Callable[[Any], R], table: sa.Table, limit: int,
               *equal: tuple[sa.ColumnElement[Any], object], before_id: int | None = None,
               visible: Visible | None = None) -> list[R]:
        """The rows :func:`newest_first` selects, each made a ``record``."""
        query = newest_first(table, limit, *equal, before_id=before_id, visible=visible)
        with self._read() as conn:
            return [record(r) for r in conn.execute(query).mappings()]

    def move(self, table: sa.Table, row_id: int, state: str, message: str, *, expect: str, **values: Any) -> bool:
        """Move a row (a request, a schedule) from state ``expect`` to ``state`` with ``message`` and the given
        ``values`` (None ones left out); False if it was not in ``expect``: someone else moved it first."""
        c = table.c
        changes = {"state": state, "message": message, "updated_at": self._now()}
        changes |= {k: v for k, v in values.items() if v is not None}
        with self._write() as conn:
            return bool(conn.execute(sa.update(table).where(c.id == row_id, c.state == expect).values(changes)
                                     ).rowcount)


def where_given(query: sa.Select[Any], *equal: tuple[sa.ColumnElement[Any], object]) -> sa.Select[Any]:
    """``query`` narrowed to ``column == value`` for each (column, value) whose value is not None."""
    for column, value in equal:
        if value is not None:
            query = query.where(column == value)
    return query


def newest_first(table: sa.Table, limit: int, *equal: tuple[sa.ColumnElement[Any], object],
                 before_id: int | None = None, visible: Visible | None = None) -> sa.Select[Any]:
    """Up to ``limit`` rows of ``table``, newest (highest id) first, narrowed by :func:`where_given`; below
    ``before_id`` (the next page starts below the last id seen); and, unless ``visible`` is None, only rows of
    an app/env one of its patterns matches (``table`` has ``app`` and ``env`` columns then)."""
    c = table.c
    query = where_given(sa.select(table).order_by(c.id.desc()).limit(limit), *equal)
    if before_id is not None:
        query = query.where(c.id < before_id)
    if visible is not None:
        query = query.where(visible_to(c.app, c.env, visible))
    return query


def visible_to(app: sa.ColumnElement[Any], env: sa.ColumnElement[Any], visible: Visible) -> sa.ColumnElement[bool]:
    if not visible:
        return sa.false()
    terms = []
    for app_pattern, env_pattern in visible:
        conds: list[sa.ColumnElement[bool]] = [app.is_not(None)]
        if app_pattern != ANY:
            conds.append(app == app_pattern)
        if env_pattern != ANY:
            conds.append(env == env_pattern)
        terms.append(sa.and_(*conds))
    return sa.or_(*terms)
