"""The agent's metrics (issue 18, item 1) on the real engine: the sampler reads real containers'
cgroups, and a real agent posts what its containers use and its gateway served.

Until the server has POST /v1/agent/metrics, the agents here reach the real server through a
small recording proxy that plays the endpoint (everything else passes through): one proxy
records the posts, the other answers 404 as a server without the endpoint does."""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from agent.driver import DockerDriver
from agent.metrics_reporter import MetricsReporter
from agent.types import LABEL_INSTANCE, LABEL_NODE, LABEL_REVISION, LABEL_SERVICE, LABEL_SLOT
from tests.harness import DOCKYARD, IMAGE, Proc, free_port, wait_for

pytestmark = pytest.mark.integration

BURN = ["sh", "-c", "while :; do :; done"]
WHOAMI = ["sh", "-c", "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 8080 -h /w"]


def proc_cpu(pid: int) -> float:
    """CPU seconds one process has used, from /proc (user + system ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_sampler_reads_real_containers_a_burner_uses_a_core_an_idle_one_none(engine):
    node = "metrics-" + secrets.token_hex(3)
    started = []
    try:
        for iid, cmd in (("burn", BURN), ("idle", ["sleep", "600"])):
            started.append(engine.containers.run(
                IMAGE, cmd, detach=True, stop_signal="SIGKILL",
                labels={LABEL_NODE: node, LABEL_INSTANCE: iid, LABEL_SERVICE: iid, LABEL_REVISION: "1", LABEL_SLOT: "1"}))
        driver = DockerDriver(node)
        listed = driver.list()  # what the reconciler lists each pass, and hands the metrics thread
        assert {o.instance_id for o in listed} == {"burn", "idle"}
        pid = engine.api.inspect_container(started[0].id)["State"]["Pid"]
        r = MetricsReporter(2.0, lambda: listed, lambda b: 200)
        before = proc_cpu(pid)
        assert r.sample() is None  # the baseline
        time.sleep(2.0)
        body = r.sample()
        burned = (proc_cpu(pid) - before) / body["window"]
        assert body is not None and 1.9 < body["window"] < 3.0
        use = {i["instance_id"]: i for i in body["instances"]}
        # a busy-looping shell takes a core on an idle host; on a shared one it gets what the
        # others leave it, so the figure is checked against the kernel's own count for its
        # process (procfs, not the cgroup files): the same within scheduling-tick noise
        assert use["burn"]["cpu"] > 0.2, body
        assert abs(use["burn"]["cpu"] - burned) < 0.1 + 0.1 * burned, (body, burned)
        assert use["idle"]["cpu"] < 0.05, body
        assert 0 < use["idle"]["memory"] < 50 * 2**20 and 0 < use["burn"]["memory"] < 50 * 2**20, body
        assert body["traffic"] == []  # no gateway here
    finally:
        for c in started:
            c.remove(force=True)


class Recorder:
    """A pass-through proxy to the real server that plays POST /v1/agent/metrics itself:
    records each body and Authorization header and answers `status`."""

    def __init__(self, upstream: str, status: int):
        self.upstream, self.status = upstream, status
        self.metrics: list[tuple[str, dict]] = []
        self.sync_auth: set[str] = set()
        self.http = httpx.Client(base_url=upstream, timeout=70)
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                if self.path == "/v1/agent/metrics":
                    rec.metrics.append((auth, json.loads(body)))
                    self._answer(rec.status, b'{"error": {"code": "not_found", "message": "played"}}'
                                 if rec.status == 404 else b"{}")
                    return
                if self.path == "/v1/agent/sync":
                    rec.sync_auth.add(auth)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                try:
                    r = rec.http.request(self.command, self.path, content=body, headers=headers)
                except httpx.HTTPError:  # the test is over and closed the client under a long poll
                    self._answer(502, b"{}")
                    return
                self._answer(r.status_code, r.content)

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.http.close()


@pytest.fixture
def recorder(cluster):  # type: ignore[no-untyped-def]
    made: list[Recorder] = []

    def make(status: int) -> Recorder:
        made.append(Recorder(cluster.url, status))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_an_agent_posts_its_containers_use_and_its_gateways_traffic(cluster, recorder):
    rec = recorder(200)
    port = free_port()
    name = cluster.node("a")
    cluster.agents[name] = Proc([DOCKYARD, "agent", "--server", rec.url, "--node-name", name, "--metrics-interval", "1",
                                 "--gateway-listen", f"127.0.0.1:{port}"], cluster.env,
                                cluster.tmp / "agent-a.log").start()
    wait_for(lambda: cluster.node_status(name) == "ready", 30, what="node ready")
    assert cluster.put("burn", command=BURN).status_code == 201
    assert cluster.put("web", command=WHOAMI, expose=[{"port": 8080}]).status_code == 201
    cluster.wait_ready("burn", 1)
    cluster.wait_ready("web", 1)
    burn, web = cluster.instances("burn")[0]["id"], cluster.instances("web")[0]["id"]

    def through_gateway() -> int:
        return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "web.localhost"}, timeout=5).status_code

    wait_for(lambda: through_gateway() == 200, 30, 0.1, what="web routed through the gateway")
    for _ in range(20):
        assert through_gateway() == 200

    def posts() -> list[dict]:
        return [body for _, body in list(rec.metrics)]

    def seen() -> bool:
        served = sum(t["requests"] for b in posts() for t in b["traffic"] if t["service"] == "web")
        hot = [i for b in posts() for i in b["instances"] if i["instance_id"] == burn and (i["cpu"] or 0) > 0.2]
        return served >= 21 and bool(hot)

    wait_for(seen, 30, 0.2, what="posts with the burner's CPU and web's requests")
    bodies = posts()
    for b in bodies:
        assert 0.5 < b["window"] < 5
    busy = [t for b in bodies for t in b["traffic"] if t["service"] == "web" and t["requests"]]
    assert all(t["latency_p95_ms"] is not None and t["latency_p95_ms"] >= 0 and t["errors"] == 0 for t in busy)
    last = {i["instance_id"]: i for i in bodies[-1]["instances"]}
    assert set(last) == {burn, web}
    assert last[web]["cpu"] is not None and last[web]["cpu"] < 0.2 and last[web]["memory"] > 0
    # authenticated with the node credential, exactly as its syncs are
    auths = {a for a, _ in list(rec.metrics)}
    assert len(auths) == 1 and auths == rec.sync_auth and next(iter(auths)).startswith("Bearer ")


def test_a_server_without_the_endpoint_is_asked_once_a_minute_and_syncing_goes_on(cluster, recorder):
    rec = recorder(404)
    name = cluster.node("b")
    cluster.agents[name] = Proc([DOCKYARD, "agent", "--server", rec.url, "--node-name", name, "--metrics-interval", "0.5"],
                                cluster.env, cluster.tmp / "agent-b.log").start()
    wait_for(lambda: cluster.node_status(name) == "ready", 30, what="node ready")
    wait_for(lambda: rec.metrics, 15, 0.1, what="a first metrics post")
    # the agent goes on doing its job: a service is started, reported, scaled
    assert cluster.put("quiet", replicas=2).status_code == 201
    cluster.wait_ready("quiet", 2)
    assert cluster.api.post("/v1/services/quiet/scale", json={"replicas": 1}).status_code < 300
    cluster.wait_ready("quiet", 1)
    time.sleep(2.0)
    assert len(rec.metrics) == 1  # asked once; again only after a minute, not every 0.5 s
    log = (cluster.tmp / "agent-b.log").read_text()
    assert log.count("does not take metrics") == 1, log[-3000:]
    assert cluster.agents[name].alive
