"""Showing a release to a person: live lines while it runs, a summary table at the end."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from graylift.core.plan import Plan
from graylift.core.state import HostState
from graylift.store import HostRunRecord, ReleaseRecord, Store

if TYPE_CHECKING:
    from graylift.service import Graylift


def _words(value: object) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list) else ""


class Watcher:
    """Prints the journal of one release as it grows (works on a TTY and in CI logs alike)."""

    def __init__(self, store: Store, release_id: int, console: Console) -> None:
        self.store, self.release_id, self.console = store, release_id, console
        self.last_id = 0

    def poll(self) -> None:
        for e in self.store.journal_entries(self.release_id, since_id=self.last_id):
            self.last_id = e.id
            line = self._line(e.host, e.step, e.event, e.detail)
            if line:
                self.console.print(f"[dim]{e.at:%H:%M:%S}[/dim] {line}")

    @staticmethod
    def _line(host: str | None, step: str, event: str, detail: dict[str, object]) -> str | None:
        if host is None:
            if step == "release":
                return f"release [bold]{event}[/bold] {detail.get('message', '')}"
            if event == "begin":
                return f"[bold]{step}[/bold]: {_words(detail.get('hosts'))}"
            if event == "done":
                return f"[bold]{step}[/bold] done ({detail.get('failed', 0)} failed)"
            if event == "wait":
                return f"{step}: waiting {detail.get('seconds')}s"
            return f"{step} {event} {detail.get('error', '')}"
        if event == "failed":
            return f"  [red]{host} {step} failed[/red]: {detail.get('error')}"
        if step == "unmute" and event == "done":
            return f"  [green]{host}[/green] done"
        if step == "quiet" and event == "done":
            return f"  {host} drained in {detail.get('waited_seconds')}s ({detail.get('ended_by')})"
        if step == "take_out" and event == "done" and detail.get("propagation_seconds"):
            waits = ", ".join(f"{k} {v}s" for k, v in detail["propagation_seconds"].items())  # type: ignore[attr-defined]
            return f"  {host} out; registry propagation wait: {waits}"
        if step == "revert" and event == "plan":
            return f"  [yellow]{host} reverting[/yellow]: {_words(detail.get('steps'))}"
        if event == "needs_attention":
            return f"  [red]{host} NEEDS ATTENTION[/red]: {detail.get('error')}"
        return None

    def summary(self, rec: ReleaseRecord) -> None:
        render_release(self.console, self.store, rec)


def batch_timings(plan: Plan, runs: list[HostRunRecord]) -> list[tuple[str, int, float | None, Counter[HostState]]]:
    """(label, hosts, seconds from first host start to last host finish, host states) per batch."""
    by_batch: dict[int, list[HostRunRecord]] = {}
    for run in runs:
        by_batch.setdefault(run.batch, []).append(run)
    rows = []
    for batch in plan.batches:
        members = by_batch.get(batch.index, [])
        starts = [r.started_at for r in members if r.started_at]
        ends = [r.finished_at for r in members if r.finished_at]
        seconds = (max(ends) - min(starts)).total_seconds() if starts and ends else None
        rows.append((batch.label, len(batch.hosts), seconds, Counter(r.state for r in members)))
    return rows


def render_release(console: Console, store: Store, rec: ReleaseRecord) -> None:
    plan = Plan.from_dict(rec.plan)
    runs = store.host_runs(rec.id)
    console.print(f"release #{rec.id} {rec.kind} {rec.app} {rec.previous_version or '(none)'} -> {rec.version} "
                  f"({rec.env}): [bold]{rec.state}[/bold] {rec.phase}")
    if rec.message:
        console.print(f"  {rec.message}")
    if rec.wait_until and not rec.finished:
        left = (rec.wait_until - datetime.now(rec.wait_until.tzinfo)).total_seconds()
        console.print(f"  waiting until {rec.wait_until:%H:%M:%S} ({max(0, left):.0f}s left)")
    table = Table("batch", "hosts", "seconds", "states")
    for label, count, seconds, states in batch_timings(plan, runs):
        table.add_row(label, str(count), f"{seconds:.1f}" if seconds is not None else "",
                      ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    console.print(table)
    entries = store.journal_entries(rec.id)
    waits = [e for e in entries if e.step == "quiet" and e.event == "done"]
    if waits:
        avg = sum(float(e.detail.get("waited_seconds", 0)) for e in waits) / len(waits)
        early = sum(1 for e in waits if e.detail.get("ended_by") == "drained")
        console.print(f"  drain waits: {len(waits)}, average {avg:.2f}s ({early} ended early: no sessions left)")
    propagation: dict[str, list[float]] = {}
    for e in entries:
        if e.step == "take_out" and e.event == "done":
            for name, seconds in (e.detail.get("propagation_seconds") or {}).items():
                propagation.setdefault(name, []).append(float(seconds))
    for name, values in propagation.items():
        console.print(f"  registry propagation waits ({name}): {len(values)}, {max(values):.1f}s each")
    for run in runs:
        if run.error:
            console.print(f"  [yellow]{run.host}[/yellow] {run.state}: {run.error}")
    for s in plan.skipped:
        console.print(f"  [yellow]{s.host}[/yellow] skipped: {s.reason}")


def drive_and_watch(gl: Graylift, release_id: int, console: Console) -> ReleaseRecord:
    """Drive a release in this process, printing its journal as it goes and a summary at the end."""
    watcher = Watcher(gl.store, release_id, console)

    async def run() -> ReleaseRecord:
        task = asyncio.create_task(gl.engine().drive(release_id))
        while not task.done():
            watcher.poll()
            await asyncio.sleep(0.3)
        rec = task.result()
        watcher.poll()
        return rec

    rec = asyncio.run(run())
    watcher.summary(rec)
    return rec
