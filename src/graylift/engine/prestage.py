"""The pre-stage phase of a release: the package staged on every in-service host before the canary starts.

It touches no traffic and no running release: it only adds ``releases/<dir>`` (the same dir, markers and
sha256 check as the stage step, :meth:`graylift.ports.DeployDir.stage`), so each host's own stage step later
finds it present and reuses it. The fan-out (:mod:`graylift.core.fanout`) decides who fetches from whom: the
first host downloads from the artifact repository, then every staged host serves its verified package to
the next ones over HTTP (a one-file server on its own address, a random port, an unguessable path token;
:class:`graylift.ports.PackagePeer`), so staging time grows with log N. Every receiver verifies the sha256.

Check-then-act and durable: every host is looked at first (already staged: skipped, and it serves others;
too little disk: refused, named), every outcome is journaled per host (step ``prestage``), and the phase is
marked done in the plan only at its end. After a kill -9 it runs again and restages nothing a host has.
A host that fails is not fatal: its stage step tries again when its turn comes (the journal says so).
Every server started is stopped when the phase ends, also on failure; one a dead controller left behind
exits by itself after ``SERVER_LIFETIME`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from graylift.core.fanout import FanOut, disk_refusal, needed_bytes, peer_url, repository_seeds
from graylift.core.layout import ReleaseDirs, release_dir_name
from graylift.core.model import Package
from graylift.core.plan import Plan
from graylift.core.state import HostState, ReleaseKind, Request
from graylift.engine.lease import Guarded
from graylift.engine.phase import PhaseBase
from graylift.errors import ArtifactError, GrayliftError, LeaseLost
from graylift.ports import DeployDir, PackagePeer
from graylift.store import HostRunRecord, ReleaseRecord

STEP = "prestage"
SERVER_LIFETIME = 1800.0

if TYPE_CHECKING:
    pass


class PrestagePhase(PhaseBase):
    """The pre-stage part of one controller's drive (:class:`graylift.engine.loop._Drive` is one)."""

    def prestage_due(self, rec: ReleaseRecord) -> bool:
        """Before the first batch of a release (not a rollback), once, when the strategy asks for it."""
        if rec.kind is not ReleaseKind.RELEASE or rec.cursor != 0 or STEP in rec.plan:
            return False
        if self.fleet.runtime.peers is None or self.fleet.runtime.deploy_dirs is None:
            return False
        return self.strategy.prestages(len(Plan.from_dict(rec.plan).hosts))

    async def prestage(self, rec: ReleaseRecord) -> None:
        out = self.out_of_service(rec)
        runs = [r for r in self.store.host_runs(rec.id) if r.state is HostState.PENDING and r.host not in out]
        self.store.update_release(rec.id, phase=STEP, message=f"pre-staging {rec.version} on {len(runs)} host(s)")
        self.store.journal(rec.id, None, STEP, "begin", {"hosts": [r.host for r in runs]})
        started = self.clock.monotonic()
        pkg = await self.hosts.targets.package(rec.id, rec.version)
        job = _Job(self, rec, pkg, {r.host: r for r in runs})
        try:
            stopped = await job.run()
        finally:
            await job.stop_servers()
        if stopped:
            self.store.journal(rec.id, None, STEP, "stopped", {"reason": "a request came in; it goes on later"})
            return
        summary = job.summary() | {"seconds": round(self.clock.monotonic() - started, 3)}
        self.store.journal(rec.id, None, STEP, "done", summary)
        fresh = self.store.get_release(rec.id)
        self.store.update_release(rec.id, plan=fresh.plan | {STEP: summary}, phase="",
                                  message=f"pre-staged {rec.version}: {summary['staged']} staged, "
                                          f"{summary['present']} had it, {len(summary['failed'])} left to their "
                                          "stage step")


class _Job:
    """One run of the phase: look at every host, fan the package out, stop the servers."""

    def __init__(self, phase: PrestagePhase, rec: ReleaseRecord, pkg: Package, runs: dict[str, HostRunRecord]) -> None:
        self.phase, self.rec, self.pkg, self.runs = phase, rec, pkg, runs
        rt = phase.fleet.runtime
        self.runtime = rt
        self.dir = release_dir_name(rec.version, pkg.sha256, rebuilt_versions=rt.rebuilt_versions)
        self.token = secrets.token_urlsafe(24)
        self.limit = max(1, phase.strategy.max_parallel)
        self.servers: dict[str, tuple[int, int]] = {}  # source -> (port, pid)
        self.starting: dict[str, asyncio.Lock] = {}
        self.present: list[str] = []
        self.failed: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self.served: dict[str, str | None] = {}  # staged host -> its source (None: the repository)

    def journal(self, host: str | None, event: str, detail: dict[str, Any]) -> None:
        self.phase.store.journal(self.rec.id, host, STEP, event, detail)

    async def _dir(self, host: str) -> tuple[DeployDir, PackagePeer]:
        transport = await self.phase.hosts.connect(self.runs[host])
        assert self.runtime.deploy_dirs is not None and self.runtime.peers is not None
        check = self.phase.lease.check
        return Guarded(self.runtime.deploy_dirs(transport), check), Guarded(self.runtime.peers(transport), check)

    async def look(self, host: str) -> str | None:
        """Check before acting: 'present', 'refused', 'failed', or None (it needs the package)."""
        try:
            ddir, _ = await self._dir(host)
            return self.judge(host, await ddir.release(self.dir))
        except LeaseLost:
            raise
        except (GrayliftError, OSError) as exc:
            self.failed[host] = str(exc)
            self.journal(host, "failed", {"error": str(exc), "note": "its stage step tries again in its turn"})
            return "failed"

    def judge(self, host: str, dirs: ReleaseDirs) -> str | None:
        """What a look at ``host`` found, journaled: 'present', 'refused', 'failed', or None (to be staged)."""
        if dirs.present:
            if dirs.sha256 == self.pkg.sha256:
                self.journal(host, "present", {"dir": self.dir})
                return "present"
            self.failed[host] = f"releases/{self.dir} exists without this build's sha256: its stage step decides"
            self.journal(host, "skipped", {"reason": self.failed[host]})
            return "failed"
        if dirs.free_bytes is None:
            raise ArtifactError(f"{host}: could not read the free space of releases/ (or its nearest parent)")
        reason = disk_refusal(host, free_bytes=dirs.free_bytes, package_bytes=self.pkg.size)
        if reason is not None:
            self.refused[host] = reason
            self.journal(host, "refused", {"error": reason})
            return "refused"
        return None

    async def stage_each(self) -> bool:
        """The repository serves every host at once (a small package: no fan-out, no peer): each host's look
        goes with its download, in the stage's first command (:meth:`DeployDir.stage_if_needed`), where
        a look of its own was a round trip per host before it. True if a request stopped it early."""
        limit = asyncio.Semaphore(self.limit)
        stopping = False

        async def one(host: str) -> None:
            nonlocal stopping
            async with limit:
                if stopping or self.phase.store.requested(self.rec.id) in (Request.PAUSE, Request.ABORT,
                                                                            Request.ROLLBACK):
                    stopping = True
                    return
                began = self.phase.clock.monotonic()
                try:
                    ddir, _ = await self._dir(host)
                    found = await ddir.stage_if_needed(
                        self.pkg, self.dir, version=self.rec.version, auth=self.runtime.artifact_auth,
                        min_free=needed_bytes(self.pkg.size), timeout=self.runtime.stage_timeout)
                    if found is not None:  # there already, or no room: nothing was fetched
                        what = self.judge(host, found)
                        if what == "present":
                            self.present.append(host)
                        elif what is None:
                            raise ArtifactError(f"{host}: the host found too little free space for the package")
                        return
                except LeaseLost:
                    raise
                except (GrayliftError, OSError) as exc:
                    self.failed[host] = str(exc)
                    self.journal(host, "failed", {"source": "repository", "error": str(exc),
                                                  "note": "not fatal: its stage step downloads it in its turn"})
                    return
                self.served[host] = None
                self._staged(host, None, began)

        await asyncio.gather(*(one(h) for h in self.runs))
        return stopping

    async def run(self) -> bool:
        """Fan the package out; True if a request (pause, abort, rollback) stopped it early."""
        strategy = self.phase.strategy
        if repository_seeds(len(self.runs), package_bytes=self.pkg.size,
                            repository_share=strategy.prestage_repository_share) >= len(self.runs):
            return await self.stage_each()
        limit = asyncio.Semaphore(self.limit)

        async def looked(host: str) -> str | None:
            async with limit:
                return await self.look(host)

        hosts = list(self.runs)
        seen = await asyncio.gather(*(looked(h) for h in hosts))
        self.present = [h for h, what in zip(hosts, seen, strict=True) if what == "present"]
        waiting = [h for h, what in zip(hosts, seen, strict=True) if what is None]
        seeds = repository_seeds(len(waiting), package_bytes=self.pkg.size,
                                 repository_share=strategy.prestage_repository_share)
        fan = FanOut(waiting, list(self.present), seeds=seeds, per_source=strategy.prestage_per_source)
        tasks: dict[asyncio.Task[tuple[bool, bool]], str] = {}
        stopping = False
        try:
            while not fan.done:
                if not stopping and self.phase.store.requested(self.rec.id) in (
                        Request.PAUSE, Request.ABORT, Request.ROLLBACK):
                    stopping = True
                for receiver, source in [] if stopping else fan.assign(limit=self.limit):
                    tasks[asyncio.create_task(self.transfer(receiver, source))] = receiver
                if not tasks:
                    break
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    receiver = tasks.pop(task)
                    ok, blame = task.result()
                    fan.finished(receiver, ok, blame_source=blame)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for host in fan.given_up:
            self.journal(host, "gave_up", {"error": self.failed.get(host, ""),
                                           "note": "not fatal: its stage step downloads it in its turn"})
        self.served = fan.served
        return stopping

    async def transfer(self, receiver: str, source: str | None) -> tuple[bool, bool]:
        """Stage ``receiver`` from ``source`` (None: the repository): (ok, the source is to blame)."""
        began = self.phase.clock.monotonic()
        try:
            ddir, _ = await self._dir(receiver)
            pkg, auth = self.pkg, self.runtime.artifact_auth
            if source is not None:
                try:
                    port = await self.server(source)
                except (GrayliftError, OSError) as exc:
                    return self._failed(receiver, source, f"its server did not start: {exc}", blame=True)
                address = self.runs[source].host_spec.address
                pkg, auth = replace(pkg, url=peer_url(address, port, self.token, pkg.filename), local_path=None), None
            await ddir.stage(pkg, self.dir, version=self.rec.version, auth=auth, replace=False,
                             timeout=self.runtime.stage_timeout)
        except LeaseLost:
            raise
        except (GrayliftError, OSError) as exc:
            return self._failed(receiver, source, str(exc), blame=source is not None)
        self.failed.pop(receiver, None)
        self._staged(receiver, source, began)
        return True, False

    def _staged(self, host: str, source: str | None, began: float) -> None:
        self.journal(host, "staged", {"source": source or "repository", "dir": self.dir,
                                      "seconds": round(self.phase.clock.monotonic() - began, 3)})
        self.phase.hosts.ahead.note_staged(host, self.dir, self.pkg.sha256, self.rec.version)

    def _failed(self, receiver: str, source: str | None, error: str, *, blame: bool) -> tuple[bool, bool]:
        error = error.replace(self.token, "***")  # the path token is a capability: never in the journal
        self.failed[receiver] = error
        self.journal(receiver, "retry" if source else "failed",
                     {"source": source or "repository", "error": error})
        return False, blame

    async def server(self, source: str) -> int:
        """The port of ``source``'s server, started on first use (one per source for the phase)."""
        lock = self.starting.setdefault(source, asyncio.Lock())
        async with lock:
            if source not in self.servers:
                _, peer = await self._dir(source)
                address = self.runs[source].host_spec.address
                self.servers[source] = await peer.serve(self.dir, self.pkg.filename, address=address,
                                                        token=self.token, lifetime=SERVER_LIFETIME)
                self.journal(source, "serving", {"port": self.servers[source][0]})
            return self.servers[source][0]

    async def stop_servers(self) -> None:
        """Stop every server this phase started, all at once, whatever happened (a lost lease: they end by their
        alarm). One after another, 100 servers took 24 s of a 1000-host release."""

        async def stop(source: str, pid: int) -> None:
            with contextlib.suppress(GrayliftError, OSError):
                _, peer = await self._dir(source)
                await peer.stop(pid)
                self.journal(source, "server_stopped", {"pid": pid})

        await asyncio.gather(*(stop(source, pid) for source, (_, pid) in self.servers.items()))

    def summary(self) -> dict[str, Any]:
        served = self.served
        return {"dir": self.dir, "staged": len(served), "present": len(self.present),
                "from_repository": sorted(h for h, s in served.items() if s is None),
                "from_peers": len([s for s in served.values() if s is not None]),
                "refused": self.refused, "failed": {h: e for h, e in self.failed.items() if h not in served}}
