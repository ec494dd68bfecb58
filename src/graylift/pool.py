"""The worker pool of ``graylift serve`` and ``graylift worker``: drives every release that needs a driver.

Every ``interval`` seconds the pool looks at the active releases and starts a driver (the engine, on its own
thread and event loop, so a slow host never holds up the web server or another release) for each release
that:

* needs a controller and has never been claimed, or its controller let it go (a new release, a resumed or
  retried one); or
* is paused with a request queued (an abort or a rollback asked of a paused release); or
* was scheduled (``graylift schedule``) and is due: the pool starts it first (preflight and all);
* with ``take_over`` (the default for servers): needs a controller and its controller is gone, by the same
  rules ``graylift status`` uses (its process died, or its heartbeat is older than the stale window by the
  database's clock).

Several pools (``serve`` and ``worker`` processes on one PostgreSQL) share the releases through the fenced
leases: whichever claims a release drives it; the others' claims are refused and they move on. Stopping the
pool cancels its drivers; the lease is let go and the next pool (or this one restarted) goes on from the
journal, re-running at most the step each host was in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any

from graylift.core.state import ReleaseState
from graylift.errors import GrayliftError, LeaseLost, StateError
from graylift.service import Graylift, ReleaseRecord

log = logging.getLogger("graylift.pool")
Task = asyncio.Task[Any]


class WorkerPool:
    def __init__(self, gl: Graylift, *, max_releases: int = 8, interval: float = 1.0, take_over: bool = True) -> None:
        self.gl = gl
        self.max_releases, self.interval, self.take_over = max_releases, interval, take_over
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._drivers: dict[int, tuple[threading.Thread, asyncio.AbstractEventLoop | None, Task | None]] = {}
        self._thread: threading.Thread | None = None

    @property
    def driving(self) -> list[int]:
        with self._lock:
            return sorted(self._drivers)

    def wants(self, rec: ReleaseRecord) -> bool:
        """Whether this pool should try to drive ``rec`` now."""
        if rec.finished:
            return False
        if rec.state is ReleaseState.PAUSED:
            return rec.requested is not None and rec.owner is None
        if not rec.state.needs_worker:
            return False
        if rec.owner is None:
            return True
        return self.take_over and self.gl.controller_gone(rec)

    def scan(self) -> list[int]:
        """Start the scheduled releases that are due, then drivers for the releases that want one; returns
        the ids of the releases it started driving."""
        try:
            self.gl.start_due_schedules()
        except GrayliftError as exc:
            log.warning("scheduled releases: %s", exc)
        started = []
        for rec in self.gl.active_releases():
            with self._lock:
                if rec.id in self._drivers or len(self._drivers) >= self.max_releases:
                    continue
            if self.wants(rec):
                self._start(rec.id)
                started.append(rec.id)
        return started

    def _start(self, release_id: int) -> None:
        thread = threading.Thread(target=self._drive, args=(release_id,), name=f"graylift-release-{release_id}",
                                  daemon=True)
        with self._lock:
            self._drivers[release_id] = (thread, None, None)
        thread.start()

    def _drive(self, release_id: int) -> None:
        loop = asyncio.new_event_loop()
        try:
            coro: Coroutine[Any, Any, ReleaseRecord] = self.gl.engine().drive(release_id)
            task = loop.create_task(coro)
            with self._lock:
                self._drivers[release_id] = (threading.current_thread(), loop, task)
            if self._stop.is_set():
                task.cancel()
            rec = loop.run_until_complete(task)
            log.info("release #%s %s: %s", rec.id, rec.state, rec.message)
        except asyncio.CancelledError:
            log.info("release #%s: driver stopped with the pool; the next worker goes on", release_id)
        except LeaseLost as exc:
            log.warning("%s", exc)
        except StateError as exc:
            log.info("release #%s not driven here: %s", release_id, exc)
        except GrayliftError as exc:
            log.warning("release #%s: %s", release_id, exc)
        except Exception:
            log.exception("release #%s: the driver failed", release_id)
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            with self._lock:
                self._drivers.pop(release_id, None)

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="graylift-pool", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except GrayliftError as exc:
                log.warning("worker pool: %s", exc)
            except Exception:
                log.exception("worker pool: scan failed")
            self._stop.wait(self.interval)

    def run_forever(self) -> None:
        """``graylift worker``: scan until stopped (SIGTERM / Ctrl-C), then stop the drivers."""
        try:
            self._loop()
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Ask the loop to stop (from a signal handler); :meth:`run_forever` then stops the drivers."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            drivers = list(self._drivers.values())
        for _thread, loop, task in drivers:
            if loop is not None and task is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(task.cancel)
        for thread, _loop, _task in drivers:
            thread.join(timeout)
