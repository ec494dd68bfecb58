"""The lease: which controller drives a release, and every liveness rule in one place.

* A controller claims a release's lease in the store (:meth:`Store.claim`): free, or its holder's heartbeat is
  older than ``STALE_AFTER_SECONDS`` by the database's clock. Every claim bumps the lease epoch.
* The holder renews it every ``HEARTBEAT_SECONDS``. A failed renewal is retried; a renewal the store refuses
  (another controller holds the lease) stops the driver at once.
* The holder keeps its own deadline on its monotonic clock: ``STALE_AFTER - SAFETY`` seconds after the last
  renewal it *sent*. Past it (frozen, starved of CPU, cut off from the database) it touches no host and no
  backend until it has asked the database: if its lease is still its own (nobody took over: claims and
  renewals are conditional updates, serialised by the database), it renews it there, journals the late
  renewal and goes on; if another controller holds it, or the database does not answer, it stops. Chubby's
  sessions work the same way (a grace period after the local lease ran out). Every write checks the lease
  in its own transaction (``Store.fenced``), so a write is safe whatever the local deadline says.
* A lease check and the command it guards are two moments, so the hosts check too: every host command goes
  through :class:`FencedTransport`, which sends it wrapped with the lease's token (its epoch, greater than every
  one the database issued before, and the database's id); a host a newer lease has touched refuses it
  (:mod:`graylift.core.fence`), and the controller stops.
* The owner id is ``host:pid:random``: two containers with the same hostname and pid do not collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from graylift.core.fence import BUSY_EXIT, fence_path, fenced_command, refused, sealed_input
from graylift.engine.crash import crash_point
from graylift.errors import CommandTimeout, LeaseLost, RemoteCommandFailed, StateError, StoreError
from graylift.ports import Clock, CommandResult, Transport
from graylift.store import Fence, ReleaseRecord, Store

HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 10.0
SAFETY_SECONDS = 3.0  # the holder stops this long before others may take over
RETRY_SECONDS = 0.5


def controller_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` names a process on this machine that no longer exists."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """One controller's hold on one release: the fence its writes carry, and its own deadline."""

    def __init__(self, store: Store, rec: ReleaseRecord, owner: str, epoch: int, clock: Clock) -> None:
        self.release_id, self.owner, self.epoch, self.clock = rec.id, owner, epoch, clock
        self.fence = Fence(rec.id, owner, epoch, self.raise_if_lost, self.check)
        self.store = store
        self.database = store.instance_id()  # with the epoch, the fencing token hosts check
        self.sent = clock.monotonic()  # when the last renewal that held was sent
        self.lost: str | None = None

    @property
    def deadline(self) -> float:
        """The holder's own deadline on its monotonic clock; past it, it asks the database before acting."""
        return self.sent + STALE_AFTER_SECONDS - SAFETY_SECONDS

    @classmethod
    def claim(cls, store: Store, release_id: int, owner: str, clock: Clock) -> Lease:
        rec = store.get_release(release_id)
        stale_after = 0.0 if owner_is_dead(rec.owner) else STALE_AFTER_SECONDS
        epoch = store.claim(release_id, owner, stale_after)
        if epoch is None:
            rec = store.get_release(release_id)
            if rec.finished:
                raise StateError(f"release #{release_id} already {rec.state}")
            raise StateError(
                f"release #{release_id} is being driven by {rec.owner} (last heartbeat {rec.heartbeat_at}); "
                f"`graylift resume {release_id}` takes it over {STALE_AFTER_SECONDS:g}s after that controller stops")
        return cls(store, store.get_release(release_id), owner, epoch, clock)

    def lose(self, why: str) -> None:
        """Known lost without asking the database (a host refused this lease's token): no further act."""
        self.lost = self.lost or why

    def on_host(self, transport: Transport, deploy_dir: str) -> Transport:
        """``transport`` behind this lease: checked before every command, and every command fenced on the host
        by this lease's token (:mod:`graylift.core.fence`)."""
        return FencedTransport(transport, self, deploy_dir)

    def raise_if_lost(self) -> None:
        """Raise LeaseLost once this controller knows it lost the lease (the fence of its writes)."""
        if self.lost is not None:
            raise LeaseLost(self.lost)

    def check(self) -> None:
        """Before acting on a host or a backend: raise LeaseLost if the lease is lost. Past its own deadline
        the holder first renews in the database (:meth:`_renew_once`) and acts only if that held."""
        if self.lost is None and self.clock.monotonic() > self.deadline:
            self._renew_once(give_up=True)
        self.raise_if_lost()

    async def renew(self) -> None:
        """Renew once, retrying store errors until the deadline. Sets ``lost`` when it cannot."""
        while self.lost is None and not self._renew_once(give_up=self.clock.monotonic() > self.deadline):
            await self.clock.sleep(RETRY_SECONDS)

    def _renew_once(self, *, give_up: bool) -> bool:
        """One conditional renewal; True when it is settled (renewed, or ``lost`` set). A store error is
        settled only with ``give_up``: the deadline passed, so the lease is given up."""
        sent = self.clock.monotonic()
        try:
            held = self.store.heartbeat(self.fence)
        except StoreError:
            if give_up:
                self.lost = (f"release #{self.release_id}: no heartbeat could be written for "
                             f"{STALE_AFTER_SECONDS - SAFETY_SECONDS:g}s; this controller stops before another may "
                             "take over")
            return give_up
        if not held:
            self.lost = f"release #{self.release_id}: another controller took the lease over; this one stops"
            return True
        late = sent > self.deadline
        silent = sent - self.sent
        self.sent = sent
        if late:  # frozen or starved, and nobody took over: said in the journal, then on
            with contextlib.suppress(StoreError):
                self.store.fenced(self.fence).journal(self.release_id, None, "lease", "renewed late",
                                                      {"silent_seconds": round(silent, 1)})
        return True

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the lease while the body runs; cancel the body as soon as the lease is lost."""
        body = asyncio.current_task()
        assert body is not None

        async def beat() -> None:
            while self.lost is None:
                await self.clock.sleep(HEARTBEAT_SECONDS)
                with contextlib.suppress(LeaseLost):  # a journal write refused: ``lost`` says why
                    await self.renew()
            body.cancel()

        task = asyncio.create_task(beat())
        try:
            yield
        except asyncio.CancelledError:
            if self.lost is not None:
                raise LeaseLost(self.lost) from None
            raise
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def release(self) -> None:
        if self.lost is None:
            with contextlib.suppress(StoreError, LeaseLost):
                self.store.release_lease(self.fence)


class Guarded:
    """An adapter behind the lease: each of its coroutine methods checks the lease before it acts, so a
    controller that lost its lease (frozen, cut off) never makes another call to a host or a backend, even in
    the middle of a step."""

    def __init__(self, inner: Any, check: Callable[[], None]) -> None:
        self._inner, self._check = inner, check

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(value):
            return value

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            self._check()
            result = await value(*args, **kwargs)
            label = getattr(self._inner, "name", None) or type(self._inner).__name__
            crash_point("after", f"{label}.{name}", getattr(args[0], "name", "") if args else "")
            return result

        return guarded


class FencedTransport:
    """A host's transport behind the lease. The lease is checked before each command (as :class:`Guarded`
    does) and the host checks it again (:func:`graylift.core.fence.fenced_command`): a command this controller
    sends after a newer lease touched the host is refused there, and the lease is lost from then on. Errors
    name the command as the caller wrote it."""

    def __init__(self, inner: Transport, lease: Lease, deploy_dir: str) -> None:
        self.inner, self.lease, self.deploy_dir = inner, lease, deploy_dir
        self.host = inner.host

    async def run(self, command: str, *, timeout: float, check: bool = True,
                  stdin: str | None = None) -> CommandResult:
        self.lease.check()
        fenced = fenced_command(self.deploy_dir, self.lease.database, self.lease.epoch, command, wait=timeout,
                                reads_input=stdin is not None)
        try:
            result = await self.inner.run(fenced, timeout=timeout, check=check,
                                          stdin=None if stdin is None else sealed_input(stdin))
        except RemoteCommandFailed as exc:
            self._raise_if_refused(exc.exit_status, exc.output)
            said = exc.output
            if exc.exit_status == BUSY_EXIT and not said.strip():
                said = (f"waited {timeout:g}s for {fence_path(self.deploy_dir)}: another graylift command held the "
                        "host's lock all that time; nothing was run")
            raise RemoteCommandFailed(self.host.name, command, exc.exit_status, said) from None
        except CommandTimeout:
            raise CommandTimeout(self.host.name, command, timeout) from None
        self._raise_if_refused(result.exit_status, result.stderr)
        return result

    def _raise_if_refused(self, status: int | None, output: str) -> None:
        line = refused(status, output)
        if line is not None:
            self.lease.lose(f"release #{self.lease.release_id}: {self.host.name} refused the command: {line}")
            raise LeaseLost(self.lease.lost or line)

    async def ping(self, *, timeout: float) -> None:
        self.lease.check()  # it runs nothing on the host: nothing there to fence
        await self.inner.ping(timeout=timeout)

    async def put(self, local: Path, remote: str) -> None:
        self.lease.check()  # a copy is not fenced on the host: it only writes a release's .partial dir
        await self.inner.put(local, remote)

    async def close(self) -> None:
        await self.inner.close()
