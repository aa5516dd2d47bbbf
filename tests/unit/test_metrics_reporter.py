"""The agent's metrics thread (agent/metrics_reporter.py) and its POST (agent/client.py `metrics`).

A stub records the bodies instead of a server; the clock and the cgroup readings are fakes.
tests/integration/test_agent_metrics.py runs the real thing on the real engine."""
from __future__ import annotations

import json
import threading

from prometheus_client.registry import CollectorRegistry

from agent import usage as u
from agent.client import Answer, SyncClient
from agent.gateway.metrics import GatewayMetrics
from agent.metrics_reporter import RETRY_UNSUPPORTED, MetricsReporter
from agent.types import Observed
from orchestrator import protocol


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class FakeReader:
    """CPU ns and memory per container id, set by the test."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.cpu, self.mem = clock, {}, {}  # type: ignore[var-annotated]

    def read_all(self, ids):  # type: ignore[no-untyped-def]
        return {c: u.Reading(self.cpu[c], self.mem[c], self.clock()) if c in self.cpu else None for c in ids}


def container(iid: str, cid: str, state: str = "running") -> Observed:
    return Observed(instance_id=iid, service="web", revision=1, slot=1, container_id=cid, state=state)


def reporter(statuses=None, gateway=None):  # type: ignore[no-untyped-def]
    clock = Clock()
    reader = FakeReader(clock)
    posted: list[dict] = []
    statuses = list(statuses or [])

    def post(body):  # type: ignore[no-untyped-def]
        posted.append(body)
        s = statuses.pop(0) if statuses else 200
        if isinstance(s, Exception):
            raise s
        return s

    listed = [container("i1", "c1"), container("i2", "c2"), container("i3", "c3", "exited"), container("", "c9")]
    r = MetricsReporter(5.0, lambda: listed, post, lambda: gateway, reader=reader, clock=clock)  # type: ignore[arg-type]
    return r, clock, reader, posted


def test_first_round_is_the_baseline_then_each_round_covers_its_window():
    gm = GatewayMetrics(CollectorRegistry())
    r, clock, reader, posted = reporter(gateway=gm)
    reader.cpu.update(c1=0, c2=0, c3=0)
    reader.mem.update(c1=1000, c2=2000, c3=3000)
    assert r.sample() is None
    clock.t += 5.0
    reader.cpu.update(c1=5_000_000_000, c2=500_000_000)
    gm.done("web", "default", 200, 0.002)
    gm.done("web", "default", 500, 0.002)
    body = r.sample()
    assert body is not None
    r.send(body)
    assert posted == [{"window": 5.0,
                       "instances": [{"instance_id": "i1", "cpu": 1.0, "memory": 1000},
                                     {"instance_id": "i2", "cpu": 0.1, "memory": 2000}],  # exited c3: not sampled
                       "traffic": [{"service": "web", "requests": 2, "errors": 1,
                                    "latency_p95_ms": posted[0]["traffic"][0]["latency_p95_ms"]}]}]
    assert 1.0 < posted[0]["traffic"][0]["latency_p95_ms"] <= 2.5
    protocol.MetricsIn.model_validate(posted[0])
    clock.t += 5.0
    body = r.sample()
    assert body["traffic"] == [{"service": "web", "requests": 0, "errors": 0, "latency_p95_ms": None}]
    assert body["instances"][0]["cpu"] == 0.0


def test_without_a_gateway_no_traffic():
    r, clock, reader, _ = reporter()
    reader.cpu.update(c1=0)
    reader.mem.update(c1=1)
    r.sample()
    clock.t += 5.0
    body = r.sample()
    assert body["traffic"] == [] and body["instances"][0]["instance_id"] == "i1"
    assert body["instances"][1] == {"instance_id": "i2", "cpu": None, "memory": None}  # no cgroup found


def test_a_server_without_the_endpoint_is_told_once_and_asked_once_a_minute(caplog):
    r, clock, _, posted = reporter(statuses=[404, 404, 200])
    body = {"window": 5.0, "instances": [], "traffic": []}
    with caplog.at_level("DEBUG", logger="dockyard.agent"):
        for _ in range(30):  # 150 s of rounds
            r.send(body)
            clock.t += 5.0
    # asked at 0 s (404), at 60 s (404), at 120 s (200), then every round
    assert len(posted) == 3 + (150 - 125) // 5
    infos = [rec.getMessage() for rec in caplog.records if rec.levelname == "INFO"]
    assert len(infos) == 2 and "does not take metrics" in infos[0] and "takes metrics now" in infos[1]
    assert not [rec for rec in caplog.records if rec.levelname == "WARNING"]
    assert RETRY_UNSUPPORTED == 60.0


def test_failures_are_logged_once_and_retried_next_round(caplog):
    r, clock, _, posted = reporter(statuses=[ConnectionRefusedError("refused"), 500, 503, 200])
    with caplog.at_level("DEBUG", logger="dockyard.agent"):
        for _ in range(5):
            r.send({"window": 5.0, "instances": [], "traffic": []})
            clock.t += 5.0
    assert len(posted) == 5
    assert len([rec for rec in caplog.records if rec.levelname == "WARNING"]) == 1
    assert [rec.getMessage() for rec in caplog.records if rec.levelname == "INFO"] == ["the server takes metrics now"]


def test_the_thread_survives_a_broken_round_and_stops_on_the_event():
    stop = threading.Event()
    calls = []

    def broken():  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) >= 3:
            stop.set()
        raise RuntimeError("boom")

    r = MetricsReporter(0.01, broken, lambda b: 200, reader=FakeReader(Clock()))  # type: ignore[arg-type]
    t = threading.Thread(target=r.run, args=(stop,))
    t.start()
    t.join(5)
    assert not t.is_alive() and len(calls) == 3


# --- the POST itself ---------------------------------------------------------------------------

class Client(SyncClient):
    def __init__(self, servers, handler):  # type: ignore[no-untyped-def]
        super().__init__(servers)
        self.handler = handler
        self.kinds: list[tuple[str, str]] = []

    def _request(self, url, kind, path, body, headers, timeout):  # type: ignore[no-untyped-def]
        self.kinds.append((url, kind))
        return self.handler(url, path, headers, json.dumps(body, separators=(",", ":")).encode())


def test_metrics_post_carries_the_node_credential_fails_over_and_uses_its_own_connection():
    seen = []

    def handler(url, path, headers, content):  # type: ignore[no-untyped-def]
        if url == "http://a":
            raise ConnectionRefusedError("refused")
        seen.append((url, path, headers["Authorization"], content))
        return Answer(404, b'{"error": {"code": "not_found", "message": "no"}}')

    c = Client("http://a,http://b", handler)
    c.credential = "node-cred"
    assert c.metrics({"window": 5.0, "instances": [], "traffic": []}) == 404
    assert seen == [("http://b", "/v1/agent/metrics", "Bearer node-cred", b'{"window":5.0,"instances":[],"traffic":[]}')]
    assert {kind for _, kind in c.kinds} == {"metrics"}  # never the long poll's or the reports' connection
    assert c.server == "http://b"
