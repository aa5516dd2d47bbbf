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
    """dockyard_gateway_requests_total{service, namespace, code},
    dockyard_gateway_request_duration_seconds{service, namespace} and
    dockyard_gateway_inflight{service, namespace}. `namespace` is the namespace of the route
    that served the request (in a space: the one the chain walk found, which may be an
    ancestor of the requested space); unrouted requests count under service "" and
    namespace ""."""

    LABELS = ["service", "namespace"]

    def __init__(self, registry: CollectorRegistry):
        self.requests: dict[tuple[str, str, str], int] = {}  # (service, namespace, code) -> count
        # (service, namespace) -> per-bucket counts (+Inf last), then the sum
        self.durations: dict[tuple[str, str], list[float]] = {}
        self.inflight: dict[tuple[str, str], int] = {}
        try:
            registry.register(self)
        except ValueError:  # a second gateway on one registry: the first one's figures are exported
            log.warning("gateway metrics already registered on this registry; this gateway's are not exported")

    def enter(self, service: str, namespace: str) -> None:
        key = (service, namespace)
        self.inflight[key] = self.inflight.get(key, 0) + 1

    def leave(self, service: str, namespace: str) -> None:
        self.inflight[(service, namespace)] -= 1

    def done(self, service: str, namespace: str, status: int, seconds: float) -> None:
        key = (service, namespace, status_class(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        series = (service, namespace)
        h = self.durations.get(series)
        if h is None:
            h = self.durations[series] = [0.0] * (len(BUCKETS) + 2)
        h[bisect_left(BUCKETS, seconds)] += 1
        h[-1] += seconds

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        requests, durations, inflight = self._families()
        for (service, namespace, code), n in list(self.requests.items()):
            requests.add_metric([service, namespace, code], n)
        for (service, namespace), h in list(self.durations.items()):
            h = list(h)
            cumulative, buckets = 0.0, []
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], h):
                cumulative += n
                buckets.append((bound, cumulative))
            durations.add_metric([service, namespace], buckets, h[-1])
        for (service, namespace), n in list(self.inflight.items()):
            inflight.add_metric([service, namespace], n)
        return iter((requests, durations, inflight))

    @classmethod
    def _families(cls) -> tuple[CounterMetricFamily, HistogramMetricFamily, GaugeMetricFamily]:
        return (CounterMetricFamily("dockyard_gateway_requests", "Requests through the gateway, by service, "
                                    "namespace and status class", labels=[*cls.LABELS, "code"]),
                HistogramMetricFamily("dockyard_gateway_request_duration_seconds",
                                      "Time from request head to end of response", labels=cls.LABELS),
                GaugeMetricFamily("dockyard_gateway_inflight", "Requests in flight through the gateway",
                                  labels=cls.LABELS))
