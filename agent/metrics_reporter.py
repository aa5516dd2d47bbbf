"""The agent's metrics thread: every --metrics-interval seconds, sample and POST /v1/agent/metrics.

Concern: when to sample and post, and what to do when the server will not take it. The
numbers themselves are agent/usage.py's.

It runs on a thread of its own and posts through the sync client's own connection for it
(agent/client.py `metrics`), so a slow or failing server costs the metrics and never the long
poll or a report. Which containers: the ones the reconciler listed in its last pass (at least
once a second), so metrics add no Docker call. A server that does not know the endpoint (404,
an older server) is told once at INFO and asked again at most once a minute; other failures
are logged once until a post succeeds again. The first round only takes the baseline: the
first post covers one full interval.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from agent import usage
from agent.types import Observed

log = logging.getLogger("dockyard.agent")
RETRY_UNSUPPORTED = 60.0  # seconds between asking a server that answered 404 again
SAMPLED_STATES = ("running", "paused", "restarting")  # states with a live cgroup


class MetricsReporter:
    def __init__(self, interval: float, containers: Callable[[], list[Observed]],
                 post: Callable[[dict[str, Any]], int], gateway_metrics: Callable[[], Any] = lambda: None,
                 reader: usage.CgroupReader | None = None, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.containers = containers  # the reconciler's last list
        self.post = post  # body -> HTTP status; raises when no server answered
        self.gateway_metrics = gateway_metrics  # the GatewayMetrics, or None without a gateway
        self.reader = reader or usage.CgroupReader(clock=clock)
        self.clock = clock
        self._at: float | None = None  # when the previous sample was taken
        self._readings: dict[str, usage.Reading | None] = {}
        self._traffic: dict[tuple[str, str], usage.Counters] = {}
        self._post_after = 0.0
        self._unsupported = False
        self._failing = False

    def sample(self) -> dict[str, Any] | None:
        """Take a sample; the body for the window since the previous one (None the first time)."""
        at = self.clock()
        pairs = [(o.instance_id, o.container_id) for o in self.containers()
                 if o.instance_id and o.state in SAMPLED_STATES]
        readings = self.reader.read_all(cid for _, cid in pairs)
        gm = self.gateway_metrics()
        traffic = usage.gateway_counters(gm) if gm is not None else {}
        body = None
        if self._at is not None:
            rows = []
            if gm is not None:
                from agent.gateway.metrics import BUCKETS  # imported only where a gateway runs

                rows = usage.traffic_rows(self._traffic, traffic, BUCKETS)
            body = usage.metrics_body(at - self._at, usage.instance_usage(pairs, self._readings, readings), rows)
        self._at, self._readings, self._traffic = at, readings, traffic
        return body

    def send(self, body: dict[str, Any]) -> None:
        """POST one body, unless a server that said 404 is not due to be asked again yet."""
        now = self.clock()
        if now < self._post_after:
            return
        try:
            status = self.post(body)
        except Exception as exc:
            self._fail(f"metrics not sent ({exc}); trying again in {self.interval:g}s")
            return
        if status == 404:
            self._post_after = now + RETRY_UNSUPPORTED
            if not self._unsupported:
                self._unsupported = True
                log.info("the server does not take metrics (POST /v1/agent/metrics: 404, an older server); "
                         "asking again every %.0fs", RETRY_UNSUPPORTED)
            return
        if status == 401:
            log.debug("metrics refused: credential not accepted (the poller joins again)")
            return
        if status >= 300:
            self._fail(f"metrics refused by the server ({status})")
            return
        if self._unsupported or self._failing:
            log.info("the server takes metrics now")
        self._unsupported = self._failing = False

    def _fail(self, message: str) -> None:
        if self._failing:
            log.debug("%s", message)
        else:
            self._failing = True
            log.warning("%s", message)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = self.clock()
            try:
                body = self.sample()
                if body is not None:
                    self.send(body)
            except Exception as exc:  # never let a metrics bug take the thread (or more) down
                log.warning("metrics round failed: %s", exc, exc_info=True)
            # a slow post shortens the wait instead of stretching the cadence
            stop.wait(max(self.interval - (self.clock() - started), 0.05))
