"""Which journal entries are release events worth a message. Pure.

    ==========================  ==================================================
    journal entry               event
    ==========================  ==================================================
    release -> running (from pending)        started
    release -> baking                        canary_baking
    release -> awaiting_promotion            awaiting_promotion
    a batch "done" with failed > 0           batch_failed
    release -> paused                        paused
    release -> rolling_back                  rolling_back
    release -> succeeded (a release)         succeeded
    release -> succeeded (a rollback)        rolled_back
    release -> rolled_back                   rolled_back
    release -> aborted / failed              aborted / failed
    ==========================  ==================================================

``approval_requested`` and ``approval_rejected`` come from the desk, not the journal.
"""

from __future__ import annotations

from graylift.store import JournalEntry

STATE_EVENTS = {"baking": "canary_baking", "awaiting_promotion": "awaiting_promotion", "paused": "paused",
                "rolling_back": "rolling_back", "rolled_back": "rolled_back", "aborted": "aborted", "failed": "failed"}


def event_of(entry: JournalEntry, kind: str) -> str | None:
    """The event ``entry`` is (of a release of ``kind``), or None."""
    if entry.host is not None:
        return None
    if entry.step == "release":
        if entry.event == "running" and entry.detail.get("from") == "pending":
            return "started"
        if entry.event == "succeeded":
            return "rolled_back" if kind == "rollback" else "succeeded"
        return STATE_EVENTS.get(entry.event)
    if entry.event == "done" and int(entry.detail.get("failed") or 0) > 0:
        return "batch_failed"
    return None
