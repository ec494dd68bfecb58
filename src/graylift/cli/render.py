"""Showing releases and hosts to a person: live journal lines, tables, the summary of a release."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from graylift.core.plan import Plan
from graylift.journal_lines import line_of
from graylift.service import Graylift, JournalEntry, ReleaseRecord, batch_timings

STATE_STYLE = {"succeeded": "green", "rolled_back": "yellow", "paused": "yellow", "failed": "red",
               "aborted": "red", "running": "cyan", "baking": "cyan", "awaiting_promotion": "magenta",
               "rolling_back": "yellow", "done": "green", "needs_attention": "red", "skipped": "yellow"}


def styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def _markup(text: str, style: str) -> str:
    return f"[{style}]{text}[/{style}]"


def journal_line(entry: JournalEntry) -> str | None:
    """One journal entry as a progress line (works on a TTY and in CI logs alike), or None to skip it: the
    console's line in colour (:func:`graylift.journal_lines.line_of`), and of a host's entries only those that
    tell progress, indented."""
    host, step, event, detail = entry.host, entry.step, entry.event, entry.detail
    if host is None:
        return line_of(entry, _markup)
    if event in ("failed", "needs_attention", "already_on_target") or (step, event) == ("revert", "plan"):
        return f"  {line_of(entry, _markup)}"
    if step == "unmute" and event == "done":
        return f"  [green]{host}[/green] done"
    if step == "quiet" and event == "done":
        return f"  {host} drained in {detail.get('waited_seconds')}s ({detail.get('ended_by')})"
    if step == "take_out" and event == "done" and detail.get("propagation_seconds"):
        waits = ", ".join(f"{k} {v}s" for k, v in dict(detail["propagation_seconds"]).items())
        return f"  {host} out; registry propagation wait: {waits}"
    return None


def printer(console: Console) -> Any:
    def show(entry: JournalEntry) -> None:
        line = journal_line(entry)
        if line:
            console.print(f"[dim]{entry.at:%H:%M:%S}[/dim] {line}")

    return show


def render_release(console: Console, gl: Graylift, rec: ReleaseRecord) -> None:
    plan = Plan.from_dict(rec.plan)
    runs = gl.host_runs(rec.id)
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
    entries = gl.journal(rec.id)
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
        if run.attention:
            console.print(f"  [red]{run.host}[/red] not back in: {', '.join(sorted(run.attention))}")
    for s in plan.skipped:
        console.print(f"  [yellow]{s.host}[/yellow] skipped: {s.reason}")
