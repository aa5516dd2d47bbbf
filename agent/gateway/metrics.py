"""The gateway's Prometheus metrics, kept as plain numbers and turned into samples at scrape.

prometheus_client's Counter/Histogram/Gauge take a lock per update; at tens of thousands of
requests a second on one event loop those locks were a measurable share of the access path.
Here only the loop thread writes (plain dicts and ints under the GIL) and `collect()`, on
the scraping thread, reads snapshots.
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from typing import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from .routing import status_class

log = logging.getLogger("dockyard.gateway")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """dockyard_gateway_requests_total{service, code}, dockyard_gateway_request_duration_seconds
    {service} and dockyard_gateway_inflight{service}; unrouted requests count under service ""."""

    def __init__(self, registry: CollectorRegistry):
        self.requests: dict[tuple[str, str], int] = {}
        self.durations: dict[str, list[float]] = {}  # service -> per-bucket counts (+Inf last), then the sum
        self.inflight: dict[str, int] = {}
        try:
            registry.register(self)
        except ValueError:  # a second gateway on one registry: the first one's figures are exported
            log.warning("gateway metrics already registered on this registry; this gateway's are not exported")

    def enter(self, service: str) -> None:
        self.inflight[service] = self.inflight.get(service, 0) + 1

    def leave(self, service: str) -> None:
        self.inflight[service] -= 1

    def done(self, service: str, status: int, seconds: float) -> None:
        key = (service, status_class(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.durations.get(service)
        if h is None:
            h = self.durations[service] = [0.0] * (len(BUCKETS) + 2)
        h[bisect_left(BUCKETS, seconds)] += 1
        h[-1] += seconds

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        requests, durations, inflight = self._families()
        for (service, code), n in list(self.requests.items()):
            requests.add_metric([service, code], n)
        for service, h in list(self.durations.items()):
            h = list(h)
            cumulative, buckets = 0.0, []
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], h):
                cumulative += n
                buckets.append((bound, cumulative))
            durations.add_metric([service], buckets, h[-1])
        for service, n in list(self.inflight.items()):
            inflight.add_metric([service], n)
        return iter((requests, durations, inflight))

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily, GaugeMetricFamily]:
        return (CounterMetricFamily("dockyard_gateway_requests", "Requests through the gateway, by service and "
                                    "status class", labels=["service", "code"]),
                HistogramMetricFamily("dockyard_gateway_request_duration_seconds",
                                      "Time from request head to end of response", labels=["service"]),
                GaugeMetricFamily("dockyard_gateway_inflight", "Requests in flight through the gateway",
                                  labels=["service"]))
