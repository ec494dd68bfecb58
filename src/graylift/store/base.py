"""The store's connection handling: short transactions, errors mapped once, and the lease fence.

A driver of a release writes through a *fenced* store (:meth:`StoreBase.fenced`): every write transaction
first reads the release's lease (owner, epoch) under a row lock and fails with :class:`LeaseLost` if another
controller holds it. So a controller that was frozen or cut off while another took its release over can never
write again, and the journal shows one driver per lease epoch. That check in the write's own transaction is
what makes a write safe; the holder's own deadline (:mod:`graylift.engine.lease`) guards what it does outside
the database.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from graylift.errors import LeaseLost, StoreError, StoreUnreachable
from graylift.store import tables as t
from graylift.store.db import short
from graylift.store.statements import GET_LEASE


def utcnow() -> datetime:
    return datetime.now(UTC)


def _always_valid() -> None:
    return None


@dataclass(frozen=True)
class Fence:
    """A driver's lease on one release. ``check`` raises LeaseLost once the holder knows it lost the lease;
    it never writes (a fenced write calls it inside its own transaction). ``confirm``, called outside any
    transaction after a write failed, may ask the database (a holder past its own deadline)."""

    release_id: int
    owner: str
    epoch: int
    check: Callable[[], None] = _always_valid
    confirm: Callable[[], None] = _always_valid


class StoreBase:
    def __init__(self, url: URL, write_engine: sa.Engine, read_engine: sa.Engine,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.url = url
        self._write_engine = write_engine
        self._read_engine = read_engine
        self._now = now
        self.fence: Fence | None = None

    def fenced(self, fence: Fence) -> Self:
        """A view of this store whose every write checks ``fence`` in its own transaction."""
        view = copy.copy(self)
        view.fence = fence
        return view

    def close(self) -> None:
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()

    @property
    def is_postgres(self) -> bool:
        return self._write_engine.dialect.name == "postgresql"

    def instance_id(self) -> str:
        """This database's own id (made by its migration): it names the fencing tokens of its leases on hosts
        (:mod:`graylift.core.fence`), whose epochs are comparable only within one database."""
        with self._read() as conn:
            return str(conn.execute(sa.select(t.instance.c.id)).scalar_one())

    def db_now(self, conn: sa.Connection | None = None) -> datetime:
        """The database's clock (PostgreSQL's ``now()``): every lease age is judged on it, never on the
        clock of the controller asking. SQLite lives on this machine: its clock is this machine's."""
        if not self.is_postgres:
            return self._now()
        if conn is not None:
            return _aware(conn.execute(sa.select(sa.func.now())).scalar_one())
        with self._read() as c:
            return _aware(c.execute(sa.select(sa.func.now())).scalar_one())

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        try:
            with self._write_engine.begin() as conn:
                if self.fence is not None:
                    self._check_fence(conn, self.fence)
                yield conn
        except SQLAlchemyError as exc:
            raise self._error(exc) from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self._read_engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: SQLAlchemyError) -> StoreError:
        if self.fence is not None:
            self.fence.confirm()  # a lost lease (frozen past it, the server ended the session) explains it better
        if isinstance(exc, OperationalError) and "locked" not in str(exc):
            return StoreUnreachable(self._failed(exc))
        return StoreError(self._failed(exc))

    def _check_fence(self, conn: sa.Connection, fence: Fence) -> None:
        fence.check()
        query = GET_LEASE.with_for_update() if self.is_postgres else GET_LEASE
        row = conn.execute(query, {"id": fence.release_id}).first()
        if row is None or row.owner != fence.owner or row.lease_epoch != fence.epoch:
            holder = f"{row.owner or 'nobody'} (epoch {row.lease_epoch})" if row is not None else "nobody"
            raise LeaseLost(f"release #{fence.release_id}: this controller ({fence.owner}, lease epoch "
                            f"{fence.epoch}) no longer holds the lease, {holder} does; it stops here")

    def _failed(self, exc: Exception) -> str:
        return f"state database {self.url.render_as_string(hide_password=True)} failed: {short(exc)}"


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
