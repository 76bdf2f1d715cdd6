"""Prometheus exposition: gauges read from the database at scrape time (so every node reports
the cluster-wide picture), the local spool depth, plus whatever the process registered in
prometheus_client's default registry (e.g. worker counters and latencies)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.api.deps import GatewayPorts
from gateway.store.repository import STATUSES


class StoreCollector(Collector):
    def __init__(self, gateway: GatewayPorts) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        store = self.gateway.store
        by_status = GaugeMetricFamily(
            "mugai_messages", "Messages in the store by status", labels=["status"]
        )
        counts = store.counts_by_status()
        for state in STATUSES:
            by_status.add_metric([state], counts.get(state, 0))
        yield by_status
        reasons = GaugeMetricFamily(
            "mugai_messages_by_reason",
            "Quarantined and deferred messages by reason code",
            labels=["status", "reason"],
        )
        for (status, reason), n in sorted(store.reason_counts().items()):
            reasons.add_metric([status, reason], n)
        yield reasons
        spool = GaugeMetricFamily("mugai_spool_depth", "Jobs waiting in this node's spool")
        try:
            spool.add_metric([], self.gateway.spool.depth())
        except OSError:
            spool.add_metric([], float("nan"))
        yield spool
        yield from _spool_states(self.gateway)


def _spool_states(gateway: GatewayPorts) -> Iterator[Metric]:
    """Issue 13: spool depth per state and the age of the oldest job (a stalled worker shows
    as a growing age even while the depth looks normal)."""
    jobs = GaugeMetricFamily("mugai_spool_jobs", "Jobs in this node's spool", labels=["state"])
    age = GaugeMetricFamily(
        "mugai_spool_oldest_job_age_seconds", "Age of the oldest job per state", labels=["state"]
    )
    try:
        stats = gateway.spool.stats()
    except OSError:
        stats = {}
    for state, (count, oldest) in stats.items():
        jobs.add_metric([state], count)
        age.add_metric([state], oldest)
    yield jobs
    yield age


def make_registry(gateway: GatewayPorts) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(gateway))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Blocking (database queries): call through asyncio.to_thread."""
    return generate_latest(REGISTRY) + generate_latest(registry)
