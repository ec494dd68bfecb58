"""How the CLI writes: user text literally, errors as one line, plain tables off a terminal, JSON for scripts.

Both consoles have Rich markup off, so a tag ``roles=[web,api]``, a version ``1.0[/x]`` or an INI error that
quotes ``[section]`` prints as it is: colour is given only as a style (:func:`styled`, :func:`line`), never by
writing ``[red]`` into a string that may hold user text. Errors are never wrapped (one grep-able line per
problem). Off a terminal, or with ``TERM=dumb``, tables are plain ASCII and keep whole cells.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, markup=False, emoji=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)

STATE_STYLE = {"succeeded": "green", "rolled_back": "yellow", "paused": "yellow", "failed": "red",
               "aborted": "red", "running": "cyan", "baking": "cyan", "awaiting_promotion": "magenta",
               "rolling_back": "yellow", "done": "green", "needs_attention": "red", "skipped": "yellow"}


def styled(text: object, style: str | None = None) -> Text:
    """``text`` as it is, in ``style`` (a state's own colour when none is given)."""
    text = str(text)
    return Text(text, style=style if style is not None else STATE_STYLE.get(text, ""))


def line(*parts: str | tuple[str, str] | Text) -> Text:
    """One output line from plain strings, ``(text, style)`` pairs and Texts; nothing in it is markup."""
    return Text.assemble(*parts)


def plain() -> bool:
    """Not a terminal (a pipe, a CI log) or ``TERM=dumb``: ASCII tables, no wrapping of cells."""
    return not console.is_terminal or os.environ.get("TERM") == "dumb"


def table(*columns: str) -> Table:
    if plain():
        return Table(*columns, box=box.ASCII, safe_box=True, expand=False)
    return Table(*columns)


def show_table(tbl: Table) -> None:
    """A table; off a terminal as wide as its cells need (a log is not 80 columns wide)."""
    if plain():
        width = _plain_console(100_000).measure(tbl).maximum
        _plain_console(max(width, 20)).print(tbl)
    else:
        console.print(tbl)


def _plain_console(width: int) -> Console:
    return Console(file=sys.stdout, width=width, highlight=False, markup=False, emoji=False, color_system=None)


def error(message: str, *, label: str = "error") -> None:
    """One error on stderr: ``error: <message>``, never wrapped, with the message's own lines kept."""
    err.print(line((f"{label}:", "red"), " ", message))


def warn(message: str) -> None:
    err.print(line(("warning:", "yellow"), " ", message))


def emit_json(data: Any) -> None:
    """The ``--output json`` answer: one JSON document on stdout (schemas in docs/cli.md)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
