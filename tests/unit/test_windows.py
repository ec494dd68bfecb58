"""Release windows (core.windows), pure: weekdays, hours past midnight, time zones, the next opening."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from graylift.core.windows import Window, is_open, next_opening, parse_days

SHANGHAI = timezone(timedelta(hours=8))
WORKDAYS = Window(days=parse_days("mon-fri"), start=time(9), end=time(17), tz="Asia/Shanghai")
NIGHTS = Window(days=parse_days("sat,sun"), start=time(22), end=time(2), tz="UTC")


@pytest.mark.parametrize(("at", "open_"), [
    (datetime(2026, 12, 2, 9, 0, tzinfo=SHANGHAI), True),     # Wednesday 09:00 Shanghai: opens
    (datetime(2026, 12, 2, 16, 59, tzinfo=SHANGHAI), True),
    (datetime(2026, 12, 2, 17, 0, tzinfo=SHANGHAI), False),   # closes at 17:00
    (datetime(2026, 12, 2, 1, 30, tzinfo=UTC), True),         # 09:30 in Shanghai
    (datetime(2026, 12, 5, 10, 0, tzinfo=SHANGHAI), False),   # Saturday
])
def test_workday_hours_in_their_own_time_zone(at: datetime, open_: bool) -> None:
    assert WORKDAYS.contains(at) is open_


def test_a_window_past_midnight_belongs_to_the_day_it_opens() -> None:
    assert NIGHTS.contains(datetime(2026, 12, 5, 23, 0, tzinfo=UTC))      # Saturday 23:00
    assert NIGHTS.contains(datetime(2026, 12, 7, 1, 0, tzinfo=UTC))       # Monday 01:00: Sunday's night
    assert not NIGHTS.contains(datetime(2026, 12, 8, 1, 0, tzinfo=UTC))   # Tuesday 01:00: Monday has none


def test_no_windows_is_always_open_and_the_next_opening_is_the_nearest() -> None:
    assert is_open([], datetime(2026, 12, 5, tzinfo=UTC))
    saturday_noon = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert next_opening([WORKDAYS, NIGHTS], saturday_noon) == datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    assert next_opening([WORKDAYS], saturday_noon) == datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)
    assert next_opening([], saturday_noon) is None


@pytest.mark.parametrize(("text", "days"), [
    ("mon-fri", {0, 1, 2, 3, 4}), ("sat,sun", {5, 6}), ("fri-mon", {4, 5, 6, 0}), ("daily", set(range(7))),
    ("Mon", {0}),
])
def test_days(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


def test_bad_days_name_the_part() -> None:
    with pytest.raises(ValueError, match="'funday' is not a day"):
        parse_days("mon,funday")
