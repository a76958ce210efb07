"""The process's metrics: one ``CollectorRegistry`` per ``Metrics``, handed to whoever reports.

Names and labels are Kubernetes' for the machinery (``apiserver_*`` as kube-apiserver exports them,
``workqueue_*`` as client-go's queue does), vmplane's own for what has no upstream name: live
updates and hotplug by kind, and the store's commit and fsync times. Nothing here is global, so
several servers in one process (tests) each have their own registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics", "QueueMetrics", "family_of"]

#: The Prometheus text exposition format ``generate_latest`` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: kube-apiserver's request latency buckets (``apiserver_request_duration_seconds``).
_REQUEST_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60,
)  # fmt: skip
#: client-go's queue buckets: 10^-8 .. 10^1 seconds.
_QUEUE_BUCKETS = tuple(10.0**exponent for exponent in range(-8, 2))
#: etcd's disk buckets (``etcd_disk_wal_fsync_duration_seconds``): 1 ms .. 8 s, doubling.
_DISK_BUCKETS = tuple(0.001 * 2**n for n in range(14))
_HOTPLUG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: Hotplug operation kind -> the live-update field family it serves (``rollout.table``'s families).
_FAMILIES = {
    "set_sockets": "cpu",
    "set_memory": "memory",
    "attach_disk": "volumes",
    "detach_disk": "volumes",
    "attach_nic": "interfaces",
    "detach_nic": "interfaces",
    "set_link": "interfaces",
}


def family_of(kind: str) -> str:
    """The field family of a hotplug operation kind (``set_sockets`` -> ``cpu``)."""
    return _FAMILIES.get(kind, "other")


class QueueMetrics:
    """One named work queue's ``workqueue_*`` series (a ``reconcile.queue.QueueObserver``)."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._depth = metrics.queue_depth.labels(name=name)
        self._adds = metrics.queue_adds.labels(name=name)
        self._waited = metrics.queue_latency.labels(name=name)
        self._worked = metrics.queue_work.labels(name=name)
        self._retries = metrics.queue_retries.labels(name=name)

    def added(self, depth: int) -> None:
        self._adds.inc()
        self._depth.set(depth)

    def started(self, waited: float, depth: int) -> None:
        self._waited.observe(waited)
        self._depth.set(depth)

    def finished(self, worked: float) -> None:
        self._worked.observe(worked)

    def retried(self) -> None:
        self._retries.inc()


class Metrics:
    """Every metric of one vmplane process, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        request_labels = ["verb", "group", "resource", "subresource", "scope"]
        self.request_duration = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, resource, subresource and "
            "scope (long-running requests, watches and console follows, excluded).",
            request_labels,
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, resource, scope and HTTP "
            "response code.",
            [*request_labels, "code"],
            registry=registry,
        )
        self.inflight = Gauge(
            "apiserver_current_inflight_requests",
            "Requests being served now, per request kind (readOnly, mutating); long-running requests "
            "(watches, console follows) excluded, as kube-apiserver's max-in-flight filter does.",
            ["request_kind"],
            registry=registry,
        )
        self.queue_depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name"], registry=registry)
        self.queue_adds = Counter(
            "workqueue_adds", "Total number of adds handled by workqueue", ["name"], registry=registry
        )
        self.queue_latency = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            ["name"],
            buckets=_QUEUE_BUCKETS,
            registry=registry,
        )
        self.queue_work = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            ["name"],
            buckets=_QUEUE_BUCKETS,
            registry=registry,
        )
        self.queue_retries = Counter(
            "workqueue_retries", "Total number of retries handled by workqueue", ["name"], registry=registry
        )
        self.live_updates = Counter(
            "vmplane_live_updates",
            "Changes applied to running guests in place, by field family and result (applied, failed).",
            ["family", "result"],
            registry=registry,
        )
        self.hotplug_duration = Histogram(
            "vmplane_hotplug_duration_seconds",
            "How long one in-place operation on a running guest took, by kind.",
            ["kind"],
            buckets=_HOTPLUG_BUCKETS,
            registry=registry,
        )
        self.store_commit = Histogram(
            "vmplane_store_commit_duration_seconds",
            "How long one store write transaction took, from BEGIN to the end of COMMIT.",
            buckets=_DISK_BUCKETS,
            registry=registry,
        )
        self.store_fsync = Histogram(
            "vmplane_store_fsync_duration_seconds",
            "How long the COMMIT of one store write took: where SQLite writes and fsyncs its WAL.",
            buckets=_DISK_BUCKETS,
            registry=registry,
        )

    def queue(self, name: str) -> QueueMetrics:
        """The observer for the work queue ``name``."""
        return QueueMetrics(self, name)

    def hotplug(self, kind: str, succeeded: bool, seconds: float) -> None:
        """One in-place operation on a running guest (``agent.inplace.InPlaceOperations.on_hotplug``)."""
        self.live_updates.labels(family=family_of(kind), result="applied" if succeeded else "failed").inc()
        self.hotplug_duration.labels(kind=kind).observe(seconds)

    def store_write(self, commit: float, fsync: float) -> None:
        """One store write transaction (``SqliteStore``'s ``observe_write``)."""
        self.store_commit.observe(commit)
        self.store_fsync.observe(fsync)

    @contextmanager
    def inflight_request(self, *, mutating: bool) -> Iterator[None]:
        """Count a request as in flight while the block runs."""
        gauge = self.inflight.labels(request_kind="mutating" if mutating else "readOnly")
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def observe_request(
        self,
        *,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        scope: str,
        code: int,
        started: float,
        long_running: bool,
    ) -> None:
        """One finished request; ``started`` is its ``time.monotonic()`` at arrival."""
        labels = {
            "verb": verb,
            "group": group,
            "resource": resource,
            "subresource": subresource,
            "scope": scope,
        }
        self.requests.labels(**labels, code=str(code)).inc()
        if not long_running:
            self.request_duration.labels(**labels).observe(time.monotonic() - started)

    def register(self, collector: Collector) -> None:
        """Add a collector read at each scrape (``fleet.FleetCollector``)."""
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """Every metric, in the Prometheus text format."""
        return generate_latest(self.registry)
