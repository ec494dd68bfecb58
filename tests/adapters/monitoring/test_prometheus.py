"""The Prometheus metrics source against a real Prometheus scraping a real lab app (pyapp-server) on loopback:
query_range values, no data (an empty list, not zero), a bad query and a stopped server as MetricsError,
and the canary analysis's default queries reading the app's counters and histogram."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from graylift.adapters.monitoring.prometheus import PrometheusMetrics
from graylift.core.analysis import AnalysisSettings
from graylift.core.model import Host
from graylift.engine.analysis import collect
from graylift.errors import MetricsError
from graylift.lab import services
from graylift.lab.apps import asset
from graylift.lab.prometheus import start_prometheus

pytestmark = pytest.mark.slow


@dataclass
class Scraped:
    url: str
    app: str
    prometheus: services.Service


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """pyapp 9.9.9 (10% of its answers 500) on 127.0.0.1, scraped each second as host ``app-1``."""
    root = tmp_path_factory.mktemp("prometheus")
    (root / "pyapp-server.py").write_bytes(asset("pyapp", "pyapp-server.py"))
    (root / "pyapp.json").write_text(json.dumps({"version": "9.9.9", "error_rate": 0.1}))
    port = services.free_port()
    app = subprocess.Popen([sys.executable, str(root / "pyapp-server.py")], env={"PYAPP_PORT": str(port)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        services.wait_for_port("127.0.0.1", port, 15, pid=app.pid)
        server = start_prometheus(root / "prometheus", services.free_port(), [("app-1", "127.0.0.1")], port)
        try:
            with httpx.Client(timeout=5) as client:
                deadline = time.monotonic() + 6
                while time.monotonic() < deadline:  # traffic over several scrapes
                    for _ in range(20):
                        client.get(f"http://127.0.0.1:{port}/work")
                    time.sleep(0.2)
            yield Scraped(f"http://127.0.0.1:{server.port}", f"http://127.0.0.1:{port}", server)
        finally:
            services.stop_service(server)
    finally:
        app.terminate()
        app.wait(10)


async def test_query_range_values_and_no_data(scraped: Scraped) -> None:
    metrics = PrometheusMetrics(scraped.url)
    end = datetime.now(UTC)
    series = await metrics.query_range('sum(pyapp_requests_total{host="app-1"})', start=end - timedelta(seconds=5),
                                       end=end, step=1)
    assert len(series) == 1 and len(series[0]) >= 3 and series[0][-1] > 100
    assert await metrics.query_range('sum(pyapp_requests_total{host="nobody"})', start=end, end=end, step=1) == []


async def test_bad_query_and_stopped_server_are_metrics_errors(scraped: Scraped) -> None:
    now = datetime.now(UTC)
    with pytest.raises(MetricsError, match=r"prometheus: the query 'sum\(' was refused: .*parse error"):
        await PrometheusMetrics(scraped.url).query_range("sum(", start=now, end=now, step=1)
    closed = f"http://127.0.0.1:{services.free_port()}"
    with pytest.raises(MetricsError, match=r"prometheus: POST .*/api/v1/query_range failed: ConnectError.*"
                                           r"is Prometheus running at"):
        await PrometheusMetrics(closed).query_range("up", start=now, end=now, step=1)


async def test_default_queries_read_the_lab_app(scraped: Scraped) -> None:
    """The analysis's default queries over the app: ~10% 5xx, p50 of /work about 10 ms; a host with no
    series is no data on every metric."""
    end = datetime.now(UTC)
    host, nobody = Host(name="app-1", address="127.0.0.1"), Host(name="nobody", address="127.0.0.2")
    window = await collect(PrometheusMetrics(scraped.url), AnalysisSettings(step=2), [host], [nobody],
                           end - timedelta(seconds=6), end)
    got = window.canary
    assert got.requests is not None and got.errors is not None and got.p50 and got.p99
    assert got.requests > 100 and 0.03 < got.errors / got.requests < 0.2
    assert all(0.006 < v < 0.015 for v in got.p50), got.p50
    assert window.baseline.p50 is None and window.baseline.requests is None and window.baseline.errors is None
    assert 'host=~"app-1"' in window.queries["errors"] and 'code=~"5.."' in window.queries["errors"]
