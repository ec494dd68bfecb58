"""How an app's hosts are released: canary, batches, pauses, failure budgets (``strategy`` in graylift.yaml).

``AppConfig.strategy_model()`` turns it into the :class:`graylift.core.model.Strategy` the planner uses.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, model_validator

from graylift.core.model import OnFailure, OnUnhealthy, PromoteMode, StrategyKind
from graylift.core.windows import Window, parse_days
from graylift.schema import Flag, NonNegativeInt, PlainName, PositiveInt, Seconds, Section, exactly_one, fail, is_number


class CanaryConfig(Section):
    hosts: list[PlainName] = Field(default_factory=list)
    group: PlainName | None = None
    count: PositiveInt = 1
    bake: Seconds = 0.0
    promote: PromoteMode = PromoteMode.AUTO

    @model_validator(mode="after")
    def _hosts_or_group(self) -> CanaryConfig:
        if self.hosts and self.group is not None:
            raise ValueError("give either hosts or group, not both")
        return self


def _check_percent(value: Any) -> Any:
    if not is_number(value) or not 0 < value < 100:
        raise fail("percent", "must be a number greater than 0 and less than 100", value)
    return float(value)


class BatchConfig(Section):
    size: PositiveInt | None = None
    percent: Annotated[float, BeforeValidator(_check_percent)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BatchConfig:
        exactly_one("give exactly one of size or percent (in an env override, set the other to null)",
                    self.size, self.percent)
        return self


class FailureBudgetConfig(Section):
    per_batch: NonNegativeInt = 0
    total: NonNegativeInt = 0


def _check_hours(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", value):
        raise fail("hours", 'must be "HH:MM-HH:MM" (24-hour clock; an end before the start runs past midnight)',
                   value)
    return value


def _check_days(value: Any) -> Any:
    if not isinstance(value, str):
        raise fail("days", 'must be a string like "mon-fri" or "sat,sun" or "daily"', value)
    try:
        parse_days(value)
    except ValueError as exc:
        raise fail("days", str(exc).removeprefix("days: "), value) from None
    return value


def _check_tz(value: Any) -> Any:
    try:
        ZoneInfo(value) if isinstance(value, str) and value else ZoneInfo("")
    except (ZoneInfoNotFoundError, ValueError):
        raise fail("tz", "must be an IANA time zone name like UTC or Asia/Shanghai", value) from None
    return value


class WindowConfig(Section):
    """A weekly release window: ``{days: mon-fri, hours: "09:00-17:00", tz: Asia/Shanghai}``."""

    days: Annotated[str, BeforeValidator(_check_days)]
    hours: Annotated[str, BeforeValidator(_check_hours)]
    tz: Annotated[str, BeforeValidator(_check_tz)] = "UTC"

    def window(self) -> Window:
        start, end = (time.fromisoformat(t) for t in self.hours.split("-"))
        return Window(days=parse_days(self.days), start=start, end=end, tz=self.tz)


_UNITS = {"s": 1, "m": 60, "h": 3600}


def _check_duration(value: Any) -> Any:
    if is_number(value) and value >= 0:
        return float(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", value) if isinstance(value, str) else None
    if match is None:
        raise fail("duration", 'must be seconds (a number >= 0) or a duration like "90s", "30m", "2h"', value)
    return float(match.group(1)) * _UNITS[match.group(2)]


def _check_groups(value: Any) -> Any:
    if not isinstance(value, list) or len(value) != 2 or len(set(map(str, value))) != 2:
        raise fail("groups", "must list exactly two different host groups, e.g. [blue, green]", value)
    return value


class BlueGreenConfig(Section):
    """``strategy.blue_green``: the two host groups (CMDB ``group``) and how long the old one is kept."""

    groups: Annotated[list[PlainName], BeforeValidator(_check_groups)] = Field(
        default_factory=lambda: ["blue", "green"])
    rollback_window: Annotated[float, BeforeValidator(_check_duration)] = 1800.0


class StrategyConfig(Section):
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    batch: BatchConfig = Field(default_factory=lambda: BatchConfig(size=1))
    max_parallel: PositiveInt = 50
    pause: Seconds = 0.0
    failure_budget: FailureBudgetConfig = Field(default_factory=FailureBudgetConfig)
    on_failure: OnFailure = OnFailure.PAUSE
    on_unhealthy: OnUnhealthy = OnUnhealthy.SKIP
    allow_half_or_more: Flag = False
    windows: list[WindowConfig] = Field(default_factory=list)  # when releases may start; none: any time
    kind: StrategyKind = StrategyKind.ROLLING
    blue_green: BlueGreenConfig = Field(default_factory=BlueGreenConfig)
