"""Release windows: the weekly hours in which an app may be released to an environment. Pure; ``now`` is passed in.

A window is a set of weekdays and a start and end time of day in a time zone (an IANA name): ``mon-fri
09:00-17:00 Asia/Shanghai``. An end at or before the start runs past midnight (``22:00-02:00``: from 22:00 of
a listed day to 02:00 the next day). No windows means always open. Rollbacks are never held to a window: going
back is how an outage ends.

>>> from datetime import datetime, timezone
>>> w = Window(days=frozenset(range(5)), start=time(9), end=time(17), tz="UTC")
>>> is_open([w], datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc))   # a Wednesday, 10:00
True
>>> next_opening([w], datetime(2026, 12, 5, 10, 0, tzinfo=timezone.utc)).isoformat()   # Saturday
'2026-12-07T09:00:00+00:00'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time
    tz: str = "UTC"

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.tz}"

    def _spans(self, day: datetime) -> tuple[datetime, datetime]:
        """The window's opening on ``day`` (a local date) and its closing."""
        zone = ZoneInfo(self.tz)
        opens = datetime.combine(day.date(), self.start, zone)
        closes = datetime.combine(day.date(), self.end, zone)
        if closes <= opens:
            closes += timedelta(days=1)
        return opens, closes

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.tz))
        for back in (0, 1):  # today's opening, or yesterday's running past midnight
            day = local - timedelta(days=back)
            if day.weekday() in self.days:
                opens, closes = self._spans(day)
                if opens <= local < closes:
                    return True
        return False

    def next_opening(self, now: datetime) -> datetime | None:
        local = now.astimezone(ZoneInfo(self.tz))
        for ahead in range(8):
            day = local + timedelta(days=ahead)
            if day.weekday() in self.days:
                opens, _ = self._spans(day)
                if opens > local:
                    return opens
        return None


def is_open(windows: Sequence[Window], now: datetime) -> bool:
    return not windows or any(w.contains(now) for w in windows)


def next_opening(windows: Sequence[Window], now: datetime) -> datetime | None:
    """When the next window opens after ``now`` (None when there are no windows or none has a day)."""
    openings = [o for w in windows if (o := w.next_opening(now)) is not None]
    return min(openings) if openings else None


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri``, ``sat,sun``, ``mon-wed,fri``, ``daily`` -> weekday numbers; ValueError names the bad part."""
    if text.strip().lower() in ("daily", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"days: {part!r} is not a day or a range of days like mon-fri (days are "
                             f"{', '.join(DAYS)} or daily)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)
