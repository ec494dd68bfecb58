"""Journal entries as lines (graylift.journal_lines), from one table: the console's line and the CLI's progress
line of each entry (None: not shown), the latter as the markup Rich would write for its styles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from graylift.cli.render import journal_line
from graylift.journal_lines import line_of
from graylift.store.records import JournalEntry


def entry(host: str | None, step: str, event: str, **detail: Any) -> JournalEntry:
    return JournalEntry(1, 7, host, step, event, detail, datetime(2030, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(("item", "console", "cli"), [
    (entry(None, "release", "started", message="by alice"), "release started: by alice",
     "release [bold]started[/bold]: by alice"),
    (entry(None, "release", "succeeded"), "release succeeded", "release [bold]succeeded[/bold]"),
    (entry(None, "lease", "claimed"), None, None),
    (entry(None, "lease", "renewed late", silent_seconds=61.2),
     "lease renewed late: this controller was silent 61.2s; nobody had taken the release over, so it goes on",
     "lease renewed late: this controller was silent 61.2s; nobody had taken the release over, so it goes on"),
    (entry(None, "canary", "begin", hosts=["h1", "h2"]), "canary: h1 h2", "[bold]canary[/bold]: h1 h2"),
    (entry(None, "batch 1", "begin", hosts=[f"h{i:03}" for i in range(1, 9)]),
     "batch 1: h001 h002 h003 h004 h005 h006 h007 h008",
     "[bold]batch 1[/bold]: h001 h002 h003 h004 h005 h006 h007 h008"),
    (entry(None, "prestage", "begin", hosts=[f"h{i:03}" for i in range(1, 101)]),
     "prestage: h001 h002 h003 h004 h005 h006 h007 h008 and 92 more",
     "[bold]prestage[/bold]: h001 h002 h003 h004 h005 h006 h007 h008 and 92 more"),
    (entry(None, "batch-1", "done", failed=1), "batch-1 done (1 failed)", "[bold]batch-1[/bold] done (1 failed)"),
    (entry(None, "bake", "wait", seconds=60), "bake: waiting 60s", "bake: waiting 60s"),
    (entry(None, "canary", "replaced", skipped=["h1"], replacement="h3"), "canary h1 replaced by h3",
     "canary h1 replaced by h3"),
    (entry(None, "canary", "aborted", error="stopped"), "canary aborted stopped", "canary aborted stopped"),
    (entry(None, "canary", "paused"), "canary paused", "canary paused"),
    (entry("h1", "stage", "failed", error="disk full"), "h1 stage FAILED: disk full",
     "  [red]h1 stage FAILED[/red]: disk full"),
    (entry("h1", "attention", "needs_attention", error="lb down"), "h1 NEEDS ATTENTION: lb down",
     "  [red]h1 NEEDS ATTENTION[/red]: lb down"),
    (entry("h1", "precheck", "already_on_target", version="2.0"), "h1 already on 2.0: put back and unmuted only",
     "  h1 already on 2.0: put back and unmuted only"),
    (entry("h1", "revert", "plan", steps=["switch", "put_back"]), "h1 reverting: switch put_back",
     "  [yellow]h1 reverting[/yellow]: switch put_back"),
    (entry("h1", "unmute", "done", seconds=0.5), "h1 unmute done in 0.5s", "  [green]h1[/green] done"),
    (entry("h1", "quiet", "done", waited_seconds=3, ended_by="idle"), "h1 quiet done", "  h1 drained in 3s (idle)"),
    (entry("h1", "take_out", "done", propagation_seconds={"zk": 2}), "h1 take_out done",
     "  h1 out; registry propagation wait: zk 2s"),
    (entry("h1", "take_out", "done"), "h1 take_out done", None),
    (entry("h1", "stage", "begin"), "h1 stage ...", None),
    (entry("h1", "stage", "retry"), "h1 stage retry", None),
])
def test_an_entry_as_the_console_and_the_cli_show_it(item: JournalEntry, console: str | None,
                                                      cli: str | None) -> None:
    assert line_of(item) == console
    line = journal_line(item)
    assert (line.markup if line is not None else None) == cli
