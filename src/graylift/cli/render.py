"""Showing releases and hosts to a person: live journal lines, tables, the summary of a release.

Everything here prints through :mod:`graylift.cli.output` (markup off): a host, version or error is literal."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from graylift.cli.output import line, show_table, styled, table
from graylift.core.plan import Plan
from graylift.journal_lines import Shown, line_of
from graylift.service import JournalEntry, ReleaseRecord, batch_timings

if TYPE_CHECKING:
    from graylift.cli.common import Service


def _styled_line(entry: JournalEntry) -> Text | None:
    """:func:`graylift.journal_lines.line_of` as a Text, its marked words in colour; the rest (host names,
    errors: user text) stays literal."""
    marks: list[tuple[str, str]] = []

    def mark(text: str, style: str) -> str:
        marks.append((text, style))
        return text

    plain = line_of(entry, mark)
    if plain is None:
        return None
    text, pos = Text(plain), 0
    for marked, style in marks:
        at = plain.find(marked, pos)
        if at >= 0:
            text.stylize(style, at, at + len(marked))
            pos = at + len(marked)
    return text


PROGRESS = Shown(events=frozenset({"failed", "needs_attention", "already_on_target"}),
                 steps=frozenset({("revert", "plan"), ("unmute", "done"), ("quiet", "done"), ("take_out", "done")}))
"""The entries the progress view may show (:func:`journal_line`): the store reads back only these."""


def journal_line(entry: JournalEntry) -> Text | None:
    """One journal entry as a progress line (works on a TTY and in CI logs alike), or None to skip it: the
    console's line in colour (:func:`graylift.journal_lines.line_of`), and of a host's entries only those that
    tell progress (of :data:`PROGRESS`), indented."""
    host, step, event, detail = entry.host, entry.step, entry.event, entry.detail
    if host is None:
        return _styled_line(entry)
    if entry not in PROGRESS:
        return None
    if event in PROGRESS.events or (step, event) == ("revert", "plan"):  # the console's line, indented
        return line("  ", _styled_line(entry) or "")
    if step == "unmute" and event == "done":
        return line("  ", (host, "green"), " done")
    if step == "quiet" and event == "done":
        return line(f"  {host} drained in {detail.get('waited_seconds')}s ({detail.get('ended_by')})")
    if step == "take_out" and event == "done" and detail.get("propagation_seconds"):
        waits = ", ".join(f"{k} {v}s" for k, v in dict(detail["propagation_seconds"]).items())
        return line(f"  {host} out; registry propagation wait: {waits}")
    return None


def printer(console: Console) -> Any:
    def show(entry: JournalEntry) -> None:
        text = journal_line(entry)
        if text:
            console.print(line((f"{entry.at:%H:%M:%S}", "dim"), " ", text))

    return show


def render_release(console: Console, gl: Service, rec: ReleaseRecord) -> None:
    plan = Plan.from_dict(rec.plan)
    runs = gl.host_runs(rec.id)
    console.print(line(f"release #{rec.id} {rec.kind} {rec.app} {rec.previous_version or '(none)'} -> "
                       f"{rec.version} ({rec.env}): ", (str(rec.state), "bold"), f" {rec.phase}"))
    if rec.message:
        console.print(f"  {rec.message}")
    if rec.wait_until and not rec.finished:
        left = (rec.wait_until - datetime.now(rec.wait_until.tzinfo)).total_seconds()
        console.print(f"  waiting until {rec.wait_until:%H:%M:%S} ({max(0, left):.0f}s left)")
    batches = table("batch", "hosts", "seconds", "states")
    for label, count, seconds, states in batch_timings(plan, runs):
        batches.add_row(label, str(count), f"{seconds:.1f}" if seconds is not None else "",
                        ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    show_table(batches)
    entries = gl.journal(rec.id, steps=("quiet", "take_out"), event="done")  # not the whole journal again
    waits = [e for e in entries if e.step == "quiet"]
    if waits:
        avg = sum(float(e.detail.get("waited_seconds", 0)) for e in waits) / len(waits)
        early = sum(1 for e in waits if e.detail.get("ended_by") == "drained")
        console.print(f"  drain waits: {len(waits)}, average {avg:.2f}s ({early} ended early: no sessions left)")
    propagation: dict[str, list[float]] = {}
    for e in entries:
        if e.step == "take_out":
            for name, seconds in (e.detail.get("propagation_seconds") or {}).items():
                propagation.setdefault(name, []).append(float(seconds))
    for name, values in propagation.items():
        console.print(f"  registry propagation waits ({name}): {len(values)}, {max(values):.1f}s each")
    for run in runs:
        if run.error:
            console.print(line("  ", (run.host, "yellow"), f" {run.state}: {run.error}"))
        if run.attention:
            console.print(line("  ", (run.host, "red"), f" not back in: {', '.join(sorted(run.attention))}"))
    for s in plan.skipped:
        console.print(line("  ", (s.host, "yellow"), f" skipped: {s.reason}"))
    for text in analysis_lines(rec.plan.get("analysis")):
        console.print(text)


def analysis_lines(state: dict[str, Any] | None) -> list[str]:
    """The canary analysis in ``status``: the baseline and the latest judgement, one line per metric."""
    if not state:
        return []
    if state.get("skipped"):
        return [f"  canary analysis skipped: {state['skipped']}"]
    baseline = state.get("baseline") or {}
    lines = [f"  canary analysis: baseline {', '.join(baseline.get('hosts', [])) or '(none)'}"
             f"{' (restarted with the canaries)' if baseline.get('restarted') else ''}, "
             f"{state.get('judgements', 0)} judgement(s)"]
    latest = state.get("latest")
    if latest:
        lines.append(f"  latest: {latest['verdict']} over {latest.get('window_seconds', 0):g}s: {latest['reason']}")
        for m in latest.get("metrics", []):
            p = f"p={m['p_value']:.3g}" if m.get("p_value") is not None else "p=-"
            ratio = f"ratio={m['ratio']:.3g}" if m.get("ratio") is not None else "ratio=-"
            lines.append(f"    {m['name']}: {m['verdict']} (n={m['n'][0]}/{m['n'][1]}, {p}, {ratio})")
    return lines


__all__ = ["analysis_lines", "journal_line", "printer", "render_release", "styled"]
