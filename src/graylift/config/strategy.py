"""How an app's hosts are released: canary, batches, pauses, failure budgets (``strategy`` in graylift.yaml).

``AppConfig.strategy_model()`` turns it into the :class:`graylift.core.model.Strategy` the planner uses.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, model_validator

from graylift.core.analysis import DEFAULT_QUERIES, PLACEHOLDERS, AnalysisSettings, OnMetricsDown
from graylift.core.model import OnFailure, OnUnhealthy, PrestageMode, PromoteMode, StrategyKind
from graylift.core.windows import Window, parse_days
from graylift.schema import (
    Flag,
    HttpUrl,
    NonNegativeInt,
    PlainName,
    PositiveInt,
    PositiveSeconds,
    Seconds,
    Section,
    Size,
    check_text,
    exactly_one,
    fail,
    is_number,
    placeholders,
    uses_placeholder,
)


def _fraction(words: str, low: float, high: float) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not is_number(value) or not low < value < high:
            raise fail("number", f"must be {words}", value)
        return float(value)

    return BeforeValidator(check)


def _ratio(value: Any) -> Any:
    if not is_number(value) or value < 1:
        raise fail("ratio", "must be a ratio >= 1 (e.g. 1.1 for 10% worse)", value)
    return float(value)


Ratio = Annotated[float, BeforeValidator(_ratio)]
Query = Annotated[str, BeforeValidator(check_text), placeholders(PLACEHOLDERS),
                  uses_placeholder(frozenset({"hosts", "addresses"}),
                                   "{hosts} or {addresses} (the group of hosts the query is about)")]


class QueriesConfig(Section):
    """PromQL templates (``{{``/``}}`` for PromQL's own braces); defaults: the lab app's metrics."""

    latency_p50: Query = DEFAULT_QUERIES["latency_p50"]
    latency_p99: Query = DEFAULT_QUERIES["latency_p99"]
    requests: Query = DEFAULT_QUERIES["requests"]
    errors: Query = DEFAULT_QUERIES["errors"]


class AnalysisConfig(Section):
    """Canary analysis from Prometheus during the bake (docs/canary-analysis.md)."""

    prometheus: HttpUrl
    queries: QueriesConfig = Field(default_factory=QueriesConfig)
    interval: PositiveSeconds = 10.0
    step: PositiveSeconds = 2.0
    min_samples: PositiveInt = 10
    min_requests: PositiveInt = 500
    significance: Annotated[float, _fraction("a p-value between 0 and 0.5 (e.g. 0.01)", 0, 0.5)] = 0.01
    latency_allowance: Ratio = 1.10
    latency_critical: Ratio = 1.5
    error_ratio: Ratio = 2.0
    error_floor: Annotated[float, _fraction("an error rate between 0 and 1 (e.g. 0.005 for 0.5%)", 0, 1)] = 0.005
    max_query_errors: PositiveInt = 3
    on_prometheus_down: OnMetricsDown = OnMetricsDown.HALT
    max_extensions: NonNegativeInt = 2

    @model_validator(mode="after")
    def _critical_above_allowance(self) -> AnalysisConfig:
        if self.latency_critical < self.latency_allowance:
            raise ValueError(f"latency_critical ({self.latency_critical:g}) must be >= latency_allowance "
                             f"({self.latency_allowance:g})")
        return self

    def settings(self) -> AnalysisSettings:
        return AnalysisSettings(
            queries=tuple(self.queries.model_dump().items()), step=self.step, on_down=self.on_prometheus_down,
            interval=self.interval, min_samples=self.min_samples, min_requests=self.min_requests,
            alpha=self.significance, latency_allowance=self.latency_allowance,
            latency_critical=self.latency_critical, error_ratio=self.error_ratio, error_floor=self.error_floor,
            max_query_errors=self.max_query_errors, max_extensions=self.max_extensions)


class CanaryConfig(Section):
    hosts: list[PlainName] = Field(default_factory=list)
    group: PlainName | None = None
    count: PositiveInt = 1
    bake: Seconds = 0.0
    promote: PromoteMode = PromoteMode.AUTO
    analysis: AnalysisConfig | None = None

    @model_validator(mode="after")
    def _hosts_or_group(self) -> CanaryConfig:
        if self.hosts and self.group is not None:
            raise ValueError("give either hosts or group, not both")
        if self.analysis is not None and self.bake <= 0:
            raise ValueError("analysis needs a bake: set canary.bake to the seconds the canary is judged for")
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
    precheck_ahead: Seconds = 30.0  # how old a pre-check's read taken before its turn may be; 0: off
    pause: Seconds = 0.0
    failure_budget: FailureBudgetConfig = Field(default_factory=FailureBudgetConfig)
    on_failure: OnFailure = OnFailure.PAUSE
    on_unhealthy: OnUnhealthy = OnUnhealthy.SKIP
    allow_half_or_more: Flag = False
    windows: list[WindowConfig] = Field(default_factory=list)  # when releases may start; none: any time
    prestage: PrestageMode = PrestageMode.AUTO  # stage on every host before the canary (docs/staging.md)
    prestage_min_hosts: PositiveInt = 20  # auto: from this many hosts
    prestage_per_source: PositiveInt = 1  # peers a staged host serves at once
    prestage_repository_share: Size = 64 * 2**20  # what the repository serves at once (docs/staging.md)
    kind: StrategyKind = StrategyKind.ROLLING
    blue_green: BlueGreenConfig = Field(default_factory=BlueGreenConfig)
