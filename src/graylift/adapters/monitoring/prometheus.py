"""Prometheus as the canary analysis's metrics source: ``GET /api/v1/query_range``.

Every failure (unreachable, HTTP error, ``status: error`` in the answer, an answer that is not a matrix)
is one :class:`graylift.errors.MetricsError` naming Prometheus and the query; the engine retries it and
never reads it as the canary's failure. A query with no series is an empty list (no data), and steps
whose value is NaN (a quantile of no requests) are left out: neither is ever read as zero.
"""

from __future__ import annotations

import math
from datetime import datetime

from graylift.adapters._http import Api
from graylift.errors import MetricsError

HINT = "is Prometheus running at {where}, and is the query valid PromQL?"


def parse_matrix(answer: object, query: str) -> list[tuple[float, ...]]:
    """The values of each series of a ``query_range`` answer, NaN and infinite values left out.

    >>> parse_matrix({"status": "success", "data": {"resultType": "matrix", "result": [
    ...     {"metric": {}, "values": [[1, "0.5"], [2, "NaN"], [3, "1"]]}]}}, "q")
    [(0.5, 1.0)]
    """
    if not isinstance(answer, dict) or answer.get("status") != "success":
        why = answer.get("error", "no status") if isinstance(answer, dict) else "not a JSON object"
        raise MetricsError(f"prometheus: the query {query!r} failed: {why}")
    data = answer.get("data") or {}
    if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise MetricsError(f"prometheus: the query {query!r} did not return a matrix "
                           f"(resultType {data.get('resultType')!r})")
    series: list[tuple[float, ...]] = []
    for item in data["result"]:
        values = tuple(float(v) for _, v in item.get("values", ()))
        series.append(tuple(v for v in values if math.isfinite(v)))
    return series


class PrometheusMetrics:
    """The :class:`graylift.ports.MetricsSource` of one Prometheus server."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.api = Api(MetricsError, "prometheus", url, timeout=timeout, hint=HINT)

    async def query_range(self, query: str, *, start: datetime, end: datetime, step: float
                          ) -> list[tuple[float, ...]]:
        params = {"query": query, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}",
                  "step": f"{max(step, 0.001):g}"}
        # Prometheus answers a bad query with HTTP 400 and a JSON body saying why: read it ourselves
        _, answer = await self.api.call("POST", "/api/v1/query_range", data=params, ok_statuses=(400, 422))
        if isinstance(answer, str):
            raise MetricsError(f"prometheus: the query {query!r} was refused: {answer[:300]}")
        return parse_matrix(answer, query)

    async def close(self) -> None:
        return None
