"""``/metrics`` for Prometheus: releases by state, host runs of active releases by state, host steps and
their durations, step failures, and the queue depth (releases waiting for a controller or a person,
webhook deliveries waiting or given up).

State gauges are read from the database at each scrape. Step counters and durations are fed by the server's
journal reader as entries are written (so they count from this process's start, as Prometheus counters do).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from graylift.service import Graylift, JournalEntry
from graylift.store.accounts import AccountStore
from graylift.store.queries import Queries

STEP_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _State(Collector):
    def __init__(self, gl: Graylift) -> None:
        self.gl = gl
        self.queries = Queries.of(gl.store)
        self.accounts = AccountStore.of(gl.store)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        releases = GaugeMetricFamily("graylift_releases", "Releases by kind and state", labels=["kind", "state"])
        for (kind, state), n in sorted(self.queries.release_counts().items()):
            releases.add_metric([kind, state], n)
        yield releases
        hosts = GaugeMetricFamily("graylift_active_host_runs", "Host runs of unfinished releases by state",
                                  labels=["state"])
        for state, n in sorted(self.queries.active_host_counts().items()):
            hosts.add_metric([state], n)
        yield hosts
        queue = GaugeMetricFamily("graylift_queue_depth", "Things waiting", labels=["what"])
        active = self.gl.active_releases()
        queue.add_metric(["releases_without_controller"], sum(1 for r in active if self.gl.controller_gone(r)))
        queue.add_metric(["releases_waiting_for_a_person"],
                         sum(1 for r in active if r.state.value in ("awaiting_promotion", "paused")))
        queue.add_metric(["requests_waiting_for_approval"], len(self.accounts.requests(state="waiting", limit=10000)))
        counts = self.accounts.delivery_counts()
        queue.add_metric(["webhook_deliveries_pending"], counts.get("pending", 0))
        queue.add_metric(["webhook_deliveries_dead"], counts.get("dead", 0))
        yield queue


class Metrics:
    def __init__(self, gl: Graylift) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_State(gl))
        self.steps = Counter("graylift_host_steps", "Host steps finished, by step and outcome",
                             ["step", "outcome"], registry=self.registry)
        self.seconds = Histogram("graylift_host_step_seconds", "Seconds a host step took", ["step"],
                                 buckets=STEP_BUCKETS, registry=self.registry)
        self.failures = Counter("graylift_release_failures", "Host failures and failed batches",
                                ["what"], registry=self.registry)

    def observe(self, entries: Iterable[JournalEntry]) -> None:
        for e in entries:
            if e.host is not None and e.event == "done":
                self.steps.labels(e.step, "done").inc()
                if isinstance(e.detail.get("seconds"), int | float):
                    self.seconds.labels(e.step).observe(float(e.detail["seconds"]))
            elif e.host is not None and e.event == "failed":
                self.steps.labels(e.step, "failed").inc()
                self.failures.labels("host_step").inc()
            elif e.host is None and e.event == "done" and int(e.detail.get("failed") or 0) > 0:
                self.failures.labels("batch").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
