"""Some names of many, for a message or a log line: the first few, then how many more (``a, b and 1 more``).
Pure. The adapters' preflight notes, the console's confirmations and the journal's batch lines all say it so."""

from __future__ import annotations

from collections.abc import Sequence


def some(names: Sequence[str], most: int, *, sep: str = ", ") -> str:
    """The first ``most`` of ``names`` joined by ``sep``, then ``and N more`` when there are more."""
    shown = sep.join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
