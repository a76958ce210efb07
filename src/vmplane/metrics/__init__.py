"""Prometheus metrics of a vmplane process (``prometheus-client``): the machinery's series, and the
fleet's, read from the objects at each scrape. Served at ``/metrics`` by ``apiserver.metrics_route``."""

from vmplane.metrics.fleet import FleetCollector, fleet_metrics
from vmplane.metrics.machinery import CONTENT_TYPE, Metrics, QueueMetrics, family_of

__all__ = ["CONTENT_TYPE", "FleetCollector", "Metrics", "QueueMetrics", "family_of", "fleet_metrics"]
