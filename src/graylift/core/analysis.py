"""Canary analysis: the canaries' metrics judged against a fresh baseline's, as pure functions.

Inputs are what the metrics source returned for one window (per group: latency samples, one per step of
the window, and sums of requests and 5xx answers); the output is a :class:`Judgement` saying, per metric,
the query, the sample sizes, the p-value, the ratio and a verdict, and overall what the bake does next.

The rules, metric by metric (``s`` = :class:`AnalysisSettings`):

============  ==========================================================  ======================================
metric        fails when                                                  passes when
============  ==========================================================  ======================================
latency p50   Mann-Whitney U, canary > baseline one-sided, p < s.alpha    n >= s.min_samples in both groups and
latency p99   and mean ratio > s.latency_allowance (n >= s.min_samples),  it does not fail
              or p < s.alpha and ratio > s.latency_critical (at once)
errors        Fisher's exact test on (5xx, requests - 5xx), one-sided,    requests >= s.min_requests in both
              p < s.alpha and canary rate > s.error_ratio x baseline      groups and it does not fail
              rate and canary rate >= s.error_floor (a critical metric:
              fails at any judgement)
============  ==========================================================  ======================================

A metric with no data (the query returned no series) is inconclusive, never zero. Errors are not judged by
Mann-Whitney: a mostly-zero series ties almost every rank and passes it whatever the rate.

Overall (:func:`judge`): any metric failing fails the canary, at any judgement. Before the bake's end a
judgement never passes (``CONTINUE``); at the end it passes only if every metric passes, else it is
``INCONCLUSIVE`` (the bake extends: too little traffic never passes by default). A query that failed is an
``ERROR`` (retried at the next interval), and ``s.max_query_errors`` of them in a row ``HALT`` the release.

>>> s = AnalysisSettings()
>>> judge(Window(canary=Group(errors=30, requests=1500), baseline=Group(errors=0, requests=1500)),
...       s, final=False).verdict.value
'fail'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from graylift.core.template import render


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    CONTINUE = "continue"  # an early judgement that did not fail: the bake goes on
    ERROR = "error"  # a query failed: retried at the next interval
    HALT = "halt"  # too many query errors in a row: the release stops (never promotes)


PLACEHOLDERS = frozenset({"hosts", "addresses", "window", "step"})
"""A query template's placeholders: ``{hosts}`` a regex of the group's host names, ``{addresses}`` of their
addresses, ``{window}`` the judged window (``37s``), ``{step}`` the latency sample step (``2s``)."""

DEFAULT_QUERIES = {  # the lab app's metrics (graylift.lab), Prometheus labelling each target with ``host``
    "latency_p50": 'histogram_quantile(0.5, sum by (le) (rate(pyapp_request_seconds_bucket{{host=~"{hosts}"}}'
                   '[{step}])))',
    "latency_p99": 'histogram_quantile(0.99, sum by (le) (rate(pyapp_request_seconds_bucket{{host=~"{hosts}"}}'
                   '[{step}])))',
    "requests": 'sum(increase(pyapp_requests_total{{host=~"{hosts}"}}[{window}]))',
    "errors": 'sum(increase(pyapp_requests_total{{host=~"{hosts}",code=~"5.."}}[{window}]))',
}


REGEX_SPECIAL = frozenset(".+*?()[]{}|^$\\")


class OnMetricsDown(StrEnum):
    HALT = "halt"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class AnalysisSettings:
    queries: tuple[tuple[str, str], ...] = tuple(DEFAULT_QUERIES.items())  # metric -> PromQL template
    step: float = 2.0  # seconds per latency sample (and the rate window behind each)
    on_down: OnMetricsDown = OnMetricsDown.HALT  # after max_query_errors in a row: pause, or roll back
    interval: float = 10.0  # seconds between judgements
    min_samples: int = 10  # latency samples per group before a latency metric may pass
    min_requests: int = 500  # requests per group before the error metric may pass
    alpha: float = 0.01  # significance of the one-sided tests
    latency_allowance: float = 1.10  # canary mean / baseline mean above this fails (when significant)
    latency_critical: float = 1.5  # ... above this fails at once
    error_ratio: float = 2.0  # canary error rate above this times the baseline's fails (when significant)
    error_floor: float = 0.005  # ... and only if the canary's rate is at least this
    max_query_errors: int = 3  # query errors in a row that halt the release
    max_extensions: int = 2  # inconclusive bakes extended before the release pauses


@dataclass(frozen=True)
class Group:
    """One group's data for one window. ``None`` is no data (distinct from 0)."""

    p50: tuple[float, ...] | None = None
    p99: tuple[float, ...] | None = None
    errors: float | None = None
    requests: float | None = None


@dataclass(frozen=True)
class Window:
    canary: Group
    baseline: Group
    queries: dict[str, str] = field(default_factory=dict)  # metric -> the query run (canary's), for the record


@dataclass(frozen=True)
class Metric:
    name: str
    verdict: Verdict
    reason: str
    query: str = ""
    n: tuple[int, int] = (0, 0)  # (canary, baseline) samples or requests
    p_value: float | None = None
    ratio: float | None = None
    canary: float | None = None  # the canary's mean latency or error rate
    baseline: float | None = None


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    metrics: tuple[Metric, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "reason": self.reason,
                "metrics": [asdict(m) | {"verdict": m.verdict.value, "n": list(m.n)} for m in self.metrics]}


def render_queries(s: AnalysisSettings, hosts: Sequence[tuple[str, str]], window: float) -> dict[str, str]:
    """Each metric's query for one group of ``(name, address)`` hosts over a window of ``window`` seconds.

    >>> render_queries(AnalysisSettings(queries=(("errors", 'x{{host=~"{hosts}"}}[{window}]'),)),
    ...                [("web-1", "10.0.0.1"), ("web.2", "10.0.0.2")], 30.4)
    {'errors': 'x{host=~"web-1|web\\\\\\\\.2"}[30s]'}
    """
    values = {"hosts": "|".join(_regex(name) for name, _ in hosts),
              "addresses": "|".join(_regex(address) for _, address in hosts),
              "window": f"{max(1, round(window))}s", "step": f"{max(1, round(s.step))}s"}
    return {metric: render(template, values, allowed=PLACEHOLDERS) for metric, template in s.queries}


def _regex(text: str) -> str:
    """``text`` as a literal in a PromQL regex inside a double-quoted string: ``.`` becomes ``\\\\.``."""
    return "".join("\\\\" + c if c in REGEX_SPECIAL else c for c in text)


def pick_baseline(canaries: Sequence[tuple[str, str]], candidates: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """As many baseline hosts as canaries, from ``candidates`` (``(name, group)``, in plan order, all still on
    the old version and in service): those in a canary's group first.

    >>> pick_baseline([("b1", "beta")], [("w1", "web"), ("b2", "beta"), ("w2", "web")])
    ('b2',)
    """
    groups = {group for _, group in canaries}
    ordered = [n for n, g in candidates if g in groups] + [n for n, g in candidates if g not in groups]
    return tuple(ordered[: len(canaries)])


def _ratio(canary: float, baseline: float) -> float:
    if baseline > 0:
        return canary / baseline
    return math.inf if canary > 0 else 1.0


def latency(name: str, canary: Sequence[float] | None, baseline: Sequence[float] | None, s: AnalysisSettings,
            query: str = "") -> Metric:
    """One latency metric: Mann-Whitney U (canary greater) and the ratio of the means."""
    if not canary or not baseline:
        which = "canary" if not canary else "baseline"
        return Metric(name, Verdict.INCONCLUSIVE, f"no data for the {which}", query,
                      (len(canary or ()), len(baseline or ())))
    from scipy.stats import mannwhitneyu  # imported here: scipy costs ~0.3 s, only a bake needs it

    n = (len(canary), len(baseline))
    c_mean, b_mean = sum(canary) / n[0], sum(baseline) / n[1]
    ratio = _ratio(c_mean, b_mean)
    p = 1.0 if len(set(canary) | set(baseline)) == 1 else float(
        mannwhitneyu(canary, baseline, alternative="greater").pvalue)

    def as_(verdict: Verdict, reason: str) -> Metric:
        return Metric(name, verdict, reason, query, n, round(p, 6),
                      None if math.isinf(ratio) else round(ratio, 4), c_mean, b_mean)

    significant = p < s.alpha
    if significant and ratio > s.latency_critical:
        return as_(Verdict.FAIL, f"canary {ratio:.2f}x the baseline (critical above {s.latency_critical:g}x), "
                                 f"p={p:.2g}")
    if min(n) < s.min_samples:
        return as_(Verdict.INCONCLUSIVE, f"{min(n)} samples, needs {s.min_samples}")
    if significant and ratio > s.latency_allowance:
        return as_(Verdict.FAIL, f"canary {ratio:.2f}x the baseline (allowed {s.latency_allowance:g}x), p={p:.2g}")
    return as_(Verdict.PASS, f"canary {ratio:.2f}x the baseline, p={p:.2g}")


def errors(canary: Group, baseline: Group, s: AnalysisSettings, query: str = "") -> Metric:
    """The error metric: Fisher's exact test on the 5xx and other answers of each group (canary greater)."""
    if canary.errors is None or canary.requests is None or baseline.errors is None or baseline.requests is None:
        which = "canary" if canary.errors is None or canary.requests is None else "baseline"
        return Metric("errors", Verdict.INCONCLUSIVE, f"no data for the {which}", query)
    ce, cn = round(canary.errors), round(canary.requests)
    be, bn = round(baseline.errors), round(baseline.requests)
    n = (cn, bn)
    if cn <= 0 or bn <= 0:
        return Metric("errors", Verdict.INCONCLUSIVE, "no requests in a group", query, n)
    from scipy.stats import fisher_exact

    c_rate, b_rate = min(1.0, ce / cn), min(1.0, be / bn)
    p = float(fisher_exact([[min(ce, cn), cn - min(ce, cn)], [min(be, bn), bn - min(be, bn)]],
                           alternative="greater").pvalue)
    ratio = _ratio(c_rate, b_rate)

    def as_(verdict: Verdict, reason: str) -> Metric:  # an infinite ratio (no baseline errors) is kept as None
        return Metric("errors", verdict, reason, query, n, round(p, 6),
                      None if math.isinf(ratio) else round(ratio, 4), c_rate, b_rate)

    what = f"canary {ce}/{cn} 5xx ({c_rate:.2%}), baseline {be}/{bn} ({b_rate:.2%}), p={p:.2g}"
    if p < s.alpha and c_rate > s.error_ratio * b_rate and c_rate >= s.error_floor:
        return as_(Verdict.FAIL, what)
    if min(n) < s.min_requests:
        return as_(Verdict.INCONCLUSIVE, f"{min(n)} requests, needs {s.min_requests}; {what}")
    return as_(Verdict.PASS, what)


def judge(window: Window | None, s: AnalysisSettings, *, final: bool, query_errors: int = 0,
          error: str = "") -> Judgement:
    """The judgement of one window. ``window`` None: a query failed (``error`` says why), ``query_errors``
    in a row counting this one."""
    if window is None:
        if query_errors >= s.max_query_errors:
            return Judgement(Verdict.HALT, f"{query_errors} metric queries failed in a row ({error})")
        return Judgement(Verdict.ERROR, f"metric query failed ({query_errors} of {s.max_query_errors} in a row "
                                        f"before the release halts): {error}")
    q = window.queries
    metrics = (latency("latency_p50", window.canary.p50, window.baseline.p50, s, q.get("latency_p50", "")),
               latency("latency_p99", window.canary.p99, window.baseline.p99, s, q.get("latency_p99", "")),
               errors(window.canary, window.baseline, s, q.get("errors", "")))
    failed = [m for m in metrics if m.verdict is Verdict.FAIL]
    if failed:
        return Judgement(Verdict.FAIL, "; ".join(f"{m.name}: {m.reason}" for m in failed), metrics)
    open_ = [m for m in metrics if m.verdict is not Verdict.PASS]
    if not final:
        return Judgement(Verdict.CONTINUE, "no metric failed" + (
            "; " + "; ".join(f"{m.name}: {m.reason}" for m in open_) if open_ else ""), metrics)
    if open_:
        return Judgement(Verdict.INCONCLUSIVE, "; ".join(f"{m.name}: {m.reason}" for m in open_), metrics)
    return Judgement(Verdict.PASS, "every metric passed", metrics)
