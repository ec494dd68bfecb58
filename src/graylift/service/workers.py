"""Who drives a release: this process (``drive``, with progress), or a detached worker (``hand_off``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from graylift.core.plan import Plan
from graylift.core.state import HostState
from graylift.journal_lines import Shown
from graylift.service.base import ServiceBase
from graylift.store import HostRunRecord, JournalEntry, ReleaseRecord

OnEntry = Callable[[JournalEntry], None]
POLL_SECONDS = 0.3


class WorkerService(ServiceBase):
    def log_dir(self) -> Path:
        return Path(os.environ.get("GRAYLIFT_LOG_DIR", Path.home() / ".graylift" / "logs"))

    def hand_off(self, release_id: int) -> Path:
        """Drive the release in a detached process so the caller can return; its log is private (0600)."""
        log_dir = self.log_dir()
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = log_dir / f"release-{release_id}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(path, 0o600)
        env = os.environ | ({"GRAYLIFT_DB": self._db_url} if self._db_url else {})
        argv = [sys.executable, "-m", "graylift", "-c", str(self.config_path.absolute()), "worker", str(release_id)]
        with os.fdopen(fd, "ab") as log:
            worker = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                      start_new_session=True)
        # reaped when it ends: a long-lived caller (graylift serve) collects no zombie per release handed off
        threading.Thread(target=worker.wait, name=f"reap-release-{release_id}", daemon=True).start()
        return path

    def drive(self, release_id: int, on_entry: OnEntry | None = None, *, shown: Shown | None = None
              ) -> ReleaseRecord:
        """Drive the release in this process until it finishes or pauses; ``on_entry`` sees each journal entry
        (of those ``shown``, when given: the store filters them in SQL)."""
        return asyncio.run(self.drive_here(release_id, on_entry, shown=shown))

    async def drive_here(self, release_id: int, on_entry: OnEntry | None = None, *, shown: Shown | None = None
                         ) -> ReleaseRecord:
        """:meth:`drive` in the running event loop (after a start in the same loop, connections are shared
        under :meth:`sharing_connections`). Without ``on_entry`` nobody reads the journal back."""
        last = 0

        def poll() -> None:
            nonlocal last
            if on_entry is None:
                return
            for entry in self.store.journal_entries(release_id, since_id=last, shown=shown):
                last = entry.id
                on_entry(entry)

        try:
            task = asyncio.create_task(self.engine().drive(release_id))
            while not task.done():
                poll()
                await asyncio.wait({task}, timeout=POLL_SECONDS)  # returns as soon as the drive ends
            return task.result()
        finally:
            poll()

    def follow(self, release_id: int, on_entry: OnEntry, *, poll: float = 0.5, shown: Shown | None = None
               ) -> ReleaseRecord:
        """Show the journal of a release someone else drives (of its entries those ``shown``, when given), until
        it finishes."""
        last = 0
        while True:
            for entry in self.store.journal_entries(release_id, since_id=last, shown=shown):
                last = entry.id
                on_entry(entry)
            rec = self.store.get_release(release_id)
            if rec.finished:
                return rec
            time.sleep(poll)


def batch_timings(plan: Plan, runs: list[HostRunRecord]) -> list[tuple[str, int, float | None, Counter[HostState]]]:
    """(label, hosts, seconds from first host start to last host finish, host states) per batch."""
    by_batch: dict[int, list[HostRunRecord]] = {}
    for run in runs:
        by_batch.setdefault(run.batch, []).append(run)
    rows = []
    for batch in plan.batches:
        members = by_batch.get(batch.index, [])
        if not batch.hosts and not members:
            continue  # a rolling batch emptied by a canary replacement
        starts = [r.started_at for r in members if r.started_at]
        ends = [r.finished_at for r in members if r.finished_at]
        seconds = (max(ends) - min(starts)).total_seconds() if starts and ends else None
        rows.append((batch.label, len(batch.hosts), seconds, Counter(r.state for r in members)))
    return rows
