"""A journal entry as one line for a person: the console shows every line as it is, the CLI's progress view
the lines that tell progress, in colour. Pure: no I/O, no markup of its own (``mark`` adds the caller's)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graylift.core.names import some

if TYPE_CHECKING:
    from graylift.store.records import JournalEntry

# Styles ``text`` ("bold", "red", "green", "yellow"): rich markup in the CLI; left plain in the console.
Mark = Callable[[str, str], str]


@dataclass(frozen=True)
class Shown:
    """Which journal entries a view may show: every entry of the release itself (no host), and of a host's
    entries those with one of ``events`` or one of the (step, event) pairs in ``steps``. A reader hands it to the
    store, which filters in SQL (a release journals a begin and a done of every step of every host; the CLI's
    progress view shows a few lines a host), and the view tests its entries against it, so the two agree."""

    events: frozenset[str] = frozenset()
    steps: frozenset[tuple[str, str]] = frozenset()

    def __contains__(self, entry: JournalEntry) -> bool:
        return entry.host is None or entry.event in self.events or (entry.step, entry.event) in self.steps


def plain(text: str, style: str) -> str:
    return text


def words(value: object) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list) else ""


def hosts_words(value: object, most: int = 8) -> str:
    """A batch's hosts as words, the first ``most`` and how many more (a batch of 100 is one readable line;
    ``graylift plan``, ``graylift status --output json`` and the console's host grid list every host)."""
    return some([str(v) for v in value], most, sep=" ") if isinstance(value, list) else ""


def line_of(entry: JournalEntry, mark: Mark = plain) -> str | None:
    """One journal entry as a log line, or None for bookkeeping entries (lease claims)."""
    host, step, event, d = entry.host, entry.step, entry.event, entry.detail
    if host is None:
        if step == "release":
            return f"release {mark(event, 'bold')}: {d.get('message', '')}".rstrip(": ")
        if step == "lease":  # bookkeeping, but a controller silent past its deadline is worth a line
            if event != "renewed late":
                return None
            return (f"lease renewed late: this controller was silent {d.get('silent_seconds')}s; nobody had taken "
                    "the release over, so it goes on")
        if event == "begin":
            return f"{mark(step, 'bold')}: {hosts_words(d.get('hosts'))}"
        if event == "done":
            return f"{mark(step, 'bold')} done ({d.get('failed', 0)} failed)"
        if event == "wait":
            return f"{step}: waiting {d.get('seconds')}s"
        if event == "replaced":
            return f"canary {words(d.get('skipped'))} replaced by {d.get('replacement')}"
        return f"{step} {event} {d.get('error', '')}".strip()
    if event == "failed":
        return f"{mark(f'{host} {step} FAILED', 'red')}: {d.get('error')}"
    if event == "needs_attention":
        return f"{mark(f'{host} NEEDS ATTENTION', 'red')}: {d.get('error')}"
    if event == "done":
        seconds = d.get("seconds")
        return f"{host} {step} done" + (f" in {seconds}s" if seconds is not None else "")
    if event == "begin":
        return f"{host} {step} ..."
    if event == "already_on_target":
        return f"{host} already on {d.get('version')}: put back and unmuted only"
    if event == "plan" and step == "revert":
        return f"{mark(f'{host} reverting', 'yellow')}: {words(d.get('steps'))}"
    return f"{host} {step} {event}"
