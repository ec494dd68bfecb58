"""What the console shows, as plain values the templates print: journal lines, the host grid's rows, the
actions a release allows now, and what each action will do (the confirmations). No HTML here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from graylift.core.names import some
from graylift.core.plan import Plan
from graylift.core.state import HostState, ReleaseKind, Request, decide_request
from graylift.errors import StateError
from graylift.journal_lines import line_of
from graylift.redact import mask_url
from graylift.service import HostRunRecord, JournalEntry, ReleaseRecord

ERROR_LINES = 12
ACTIONS = ("promote", "pause", "resume", "retry", "abort", "rollback")
LABELS = {"promote": "Promote", "pause": "Pause", "resume": "Resume", "retry": "Retry failed hosts",
          "abort": "Stop", "rollback": "Stop and roll back"}


def log_text(rec: ReleaseRecord, entries: list[JournalEntry]) -> str:
    head = (f"# release #{rec.id} {rec.kind.value} {rec.app} {rec.previous_version or '(none)'} -> {rec.version} "
            f"({rec.env}) started by {rec.started_by}; {rec.state.value}\n")
    lines = []
    for e in entries:
        text = line_of(e)
        if text is not None:
            lines.append(f"{e.at:%Y-%m-%d %H:%M:%S} {text}")
    return head + mask_url("\n".join(lines)) + "\n"


@dataclass(frozen=True)
class GridRow:
    host: str
    address: str
    batch: str
    state: str
    step: str
    versions: str
    started: str
    seconds: str
    error_tail: str
    attention: str


def grid(rec: ReleaseRecord, runs: list[HostRunRecord], now: datetime) -> list[GridRow]:
    labels = {b.index: b.label for b in Plan.from_dict(rec.plan).batches}
    rows = []
    for r in runs:
        seconds = ""
        if r.started_at is not None:
            end = r.finished_at or (now if r.state.in_flight else None)
            if end is not None:
                seconds = f"{(end - r.started_at).total_seconds():.1f}s"
        tail = "\n".join((r.error or "").strip().splitlines()[-ERROR_LINES:])
        step = r.step or ""
        if r.state.in_flight and step:
            step += " ..."
        rows.append(GridRow(host=r.host, address=r.address, batch=labels.get(r.batch, str(r.batch)),
                            state=r.state.value, step=step,
                            versions=f"{r.previous_version or '?'} \u2192 {r.target_version}",
                            started=f"{r.started_at:%H:%M:%S}" if r.started_at else "", seconds=seconds,
                            error_tail=mask_url(tail),
                            attention=", ".join(f"{k}: {v}" for k, v in sorted((r.attention or {}).items()))))
    return rows


def allowed_actions(rec: ReleaseRecord) -> list[str]:
    """The requests the release accepts in its state and direction (core.state's table)."""
    found = []
    for action in ACTIONS:
        try:
            decide_request(Request(action), state=rec.state, direction=rec.direction, kind=rec.kind,
                           release_id=rec.id)
        except StateError:
            continue
        found.append(action)
    return found


def counts(runs: list[HostRunRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        out[r.state.value] = out.get(r.state.value, 0) + 1
    return out


def at_once(rec: ReleaseRecord) -> int:
    batches = [b for b in Plan.from_dict(rec.plan).batches if not b.canary]
    return max((len(b.hosts) for b in batches), default=1)


def confirmation(rec: ReleaseRecord, runs: list[HostRunRecord], action: str) -> tuple[str, list[str], bool]:
    """(title, what will happen, whether a reason is required) for ``action`` on ``rec``."""
    new = [r.host for r in runs if r.state is HostState.DONE]
    old = [r.host for r in runs if r.state not in (HostState.DONE, HostState.ROLLED_BACK)]
    pending = [r.host for r in runs if r.state is HostState.PENDING]
    prev = rec.previous_version or "their previous version"
    k = at_once(rec)
    where = f"{rec.app} in {rec.env}"
    if action == "promote":
        return (f"Promote the canary of {where}?", [
            f"The rolling batches go on: {len(pending)} more host(s) get {rec.version}, at most {k} out of service "
            "at once.", _names("Next", pending)], False)
    if action == "pause":
        return (f"Pause release #{rec.id}?", [
            "It stops at the next safe point; hosts in flight finish their step first.",
            f"{len(new)} host(s) are on {rec.version}, {len(old)} on {prev}: the service runs mixed versions "
            "while paused."], False)
    if action == "resume":
        way = ("it goes on rolling back" if rec.direction.value == "back"
               else f"it goes on to {rec.version} on {len(pending)} more host(s), at most {k} at once")
        return (f"Resume release #{rec.id}?", [f"Resume {where}: {way}."], False)
    if action == "retry":
        failed = [r.host for r in runs if r.state in (HostState.FAILED, HostState.NEEDS_ATTENTION, HostState.SKIPPED)]
        way = "rolling back" if rec.direction.value == "back" else f"forward to {rec.version}"
        return (f"Retry release #{rec.id}?", [f"{len(failed)} host(s) are tried again, {way}.",
                                              _names("Hosts", failed)], False)
    if action == "abort":
        return (f"Stop release #{rec.id} of {where}?", [
            "It stops at the next safe point and ends; nothing is rolled back.",
            f"MIXED VERSIONS: {len(new)} host(s) keep {rec.version}, {len(old)} stay on {prev}, until you roll "
            "back or release again.", _names(f"On {rec.version}", new)], True)
    if action == "rollback":
        if rec.kind is ReleaseKind.ROLLBACK:
            return ("A rollback cannot be rolled back", ["Stop it, then roll back to another version."], True)
        return (f"Stop and roll back {where} to {prev}?", [
            f"Target: {rec.app} {prev} in {rec.env}.",
            f"Every host already on {rec.version} ({len(new)}) goes back to its own previous version, at most {k} "
            "out of service at once; hosts not yet touched stay as they are.", _names("Going back", new)], True)
    return (action, [], False)


def _names(label: str, hosts: list[str]) -> str:
    if not hosts:
        return f"{label}: none"
    return f"{label}: {some(hosts, 20)}"
