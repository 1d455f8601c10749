"""The service's Prometheus metrics (``GET /metrics``), in a registry of its own per service.

* ``charter_decisions_total{domain, outcome}``: decisions made, by outcome (``engine.audit.query.outcome_of``);
  requests whose facts were bad count as ``bad_facts``, decisions that could not be made as
  ``error``;
* ``charter_decision_seconds{domain}``: the time of one decision, its log append included
  (a histogram; a batch observes each item's share);
* ``charter_log_append_seconds``: one append of the decision log (a batch of records);
* ``charter_log_commits_total``: durable commits of the decision log, and
  ``charter_log_batch_records``: the records in each (a histogram): with group commit, the
  requests decided while a commit ran share the next one, so commits < requests under load;
* ``charter_reloads_total``, ``charter_reloads_failed_total``: reloads of the policies by the
  watcher; ``charter_ready`` (1 or 0) and ``charter_bundle_info{version, snapshot}`` (1), read
  from the service as each scrape happens;
* ``charter_jobs_running``: replay jobs under way (the service's queue depth).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# from tens of microseconds (an unlogged decision) to a second (a slow durable append)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)  # records in one commit of the log
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class State(Collector):
    """What is read from the service at each scrape rather than counted as it happens."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        now = self.read()
        reloads = CounterMetricFamily("charter_reloads", "policy reloads that succeeded")
        reloads.add_metric([], now["reloads"])
        failed = CounterMetricFamily("charter_reloads_failed", "policy reloads that failed (the old policies serve)")
        failed.add_metric([], now["failures"])
        ready = GaugeMetricFamily("charter_ready", "1 when the service is ready (GET /ready answers 200)")
        ready.add_metric([], 1.0 if now["ready"] else 0.0)
        jobs = GaugeMetricFamily("charter_jobs_running", "replay jobs queued or running")
        jobs.add_metric([], now["jobs"])
        info = InfoMetricFamily("charter_bundle", "the policy bundle and population snapshot serving")
        info.add_metric([], {"version": now["bundle_version"], "snapshot": now["snapshot_id"] or ""})
        yield from (reloads, failed, ready, jobs, info)


class Metrics:
    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self.read = read
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "charter_decisions", "decisions made, by domain and outcome", ["domain", "outcome"], registry=self.registry
        )
        self.latency = Histogram(
            "charter_decision_seconds",
            "time of one decision, its log append included",
            ["domain"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.log_append = Histogram(
            "charter_log_append_seconds",
            "time of one durable append to the decision log",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.log_commits = Counter(
            "charter_log_commits", "durable commits of the decision log (one transaction each)", registry=self.registry
        )
        self.log_batch = Histogram(
            "charter_log_batch_records",
            "records appended in one commit of the decision log (group commit)",
            buckets=SIZES,
            registry=self.registry,
        )
        self.registry.register(State(read))

    def decided(self, domain: str, outcome: str, seconds: float) -> None:
        self.decisions.labels(domain, outcome).inc()
        self.latency.labels(domain).observe(seconds)

    def committed(self, records: int, seconds: float) -> None:
        """One durable commit of the decision log: ``records`` records in ``seconds``."""
        self.log_commits.inc()
        self.log_batch.observe(records)
        self.log_append.observe(seconds)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format. Under ``charter serve --workers N`` (where
        ``PROMETHEUS_MULTIPROC_DIR`` is set) the counters and histograms are every worker's
        summed; what is read at the scrape (reloads, readiness, bundle) is the answering worker's."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(State(self.read))
            return generate_latest(registry)
        return generate_latest(self.registry)
