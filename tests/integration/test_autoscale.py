"""Autoscaling and rebalancing on the real engine: agents measure (cgroups, their gateways),
the leader's automation round decides, the loop places (docs/autoscaling.md)."""
from __future__ import annotations

import subprocess
import threading
import time

import httpx

from tests.harness import ADMIN, DOCKYARD, free_port, wait_for

WHOAMI = ["sh", "-c", "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 8080 -h /w"]
HEALTH = {"type": "http", "port": 8080, "path": "/", "interval": 0.3, "timeout": 1, "retries": 1}
# burns a core for 40 s from its start, then idles (replicas it brings burn for their first 40 s too)
BURN = ["sh", "-c", "end=$(( $(date +%s) + 40 )); while [ $(date +%s) -lt $end ]; do :; done; exec sleep 3600"]


def test_cpu_bound_service_scales_up_then_back_down(cluster):  # type: ignore[no-untyped-def]
    cluster.start_agent("a", "--metrics-interval", "1")
    spec = dict(command=BURN, replicas=1, resources={"cpus": 0.2},
                autoscale={"min": 1, "max": 3, "metric": "cpu", "target": 50, "scale_down_stabilization": 15})
    assert cluster.put("burn", **spec).status_code == 201
    peak = wait_for(lambda: (n := cluster.service("burn")["replicas"]) > 1 and n, 90, 0.5,
                    what="scaled up on CPU")
    msg = [m for m in cluster.events(service="burn") if m["kind"] == "autoscaled"][-1]["message"]  # the oldest
    assert msg.startswith("cpu ") and "against a target of 50%: 1 -> " in msg, msg
    top = subprocess.run([DOCKYARD, "top", "burn"], capture_output=True, text=True, timeout=60,
                         env={**cluster.env, "DOCKYARD_URL": cluster.url, "DOCKYARD_TOKEN": ADMIN,
                              "DOCKYARD_CONFIG": str(cluster.tmp / "cli.json")})
    assert top.returncode == 0 and "autoscale cpu target 50" in top.stdout, top.stdout + top.stderr
    # the burners stop after 40 s; 15 s of quiet recommendations later it is back at 1
    wait_for(lambda: cluster.service("burn")["replicas"] == 1, 150, 1, what="scaled back down")
    said = [e["message"] for e in cluster.events(service="burn") if e["kind"] == "autoscaled"]  # newest first
    assert said[0].startswith("cpu ") and said[0].endswith("-> 1") and f"1 -> {peak}" in said[-1], said


def _load(port: int, host: str, rate: float, stop: threading.Event, results: list) -> None:  # type: ignore[type-arg]
    with httpx.Client(timeout=5) as c:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                results.append(c.get(f"http://127.0.0.1:{port}/", headers={"Host": host}).status_code)
            except httpx.HTTPError as exc:
                results.append(repr(exc))
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - t0)))


def test_request_rate_target_scales_with_a_load_generator(cluster):  # type: ignore[no-untyped-def]
    port = free_port()
    cluster.start_agent("a", "--gateway-listen", f"127.0.0.1:{port}", "--metrics-interval", "1")
    spec = dict(command=WHOAMI, replicas=1, expose=[{"port": 8080, "host": "web.localhost"}], health=HEALTH,
                autoscale={"min": 1, "max": 3, "metric": "rps", "target": 5, "scale_down_stabilization": 10})
    assert cluster.put("web", **spec).status_code == 201
    cluster.wait_ready("web", 1)
    stop, results = threading.Event(), []
    load = threading.Thread(target=_load, args=(port, "web.localhost", 25.0, stop, results))
    load.start()
    try:
        wait_for(lambda: cluster.service("web")["replicas"] == 3, 90, 0.5, what="scaled to max on request rate")
        msg = [e["message"] for e in cluster.events(service="web") if e["kind"] == "autoscaled"][-1]
        assert msg.startswith("rps ") and "req/s per instance against a target of 5" in msg, msg
        cluster.wait_ready("web", 3)
    finally:
        stop.set()
        load.join(10)
    assert results.count(200) > 20 and all(r == 200 for r in results), sorted(set(map(str, results)))
    wait_for(lambda: cluster.service("web")["replicas"] == 1, 120, 1, what="scaled down without traffic")


def test_a_joining_node_gets_its_share_with_no_failed_request(cluster):  # type: ignore[no-untyped-def]
    ports = {}
    for short in ("a", "b"):
        ports[short] = free_port()
        cluster.start_agent(short, "--gateway-listen", f"127.0.0.1:{ports[short]}", "--drain-seconds", "1")
    spec = dict(command=WHOAMI, replicas=6, expose=[{"port": 8080, "host": "web.localhost"}], health=HEALTH,
                placement={"rebalance_max_moves": 1})
    assert cluster.put("web", **spec).status_code == 201
    cluster.wait_ready("web", 6)
    cluster.start_agent("c", "--gateway-listen", f"127.0.0.1:{free_port()}", "--drain-seconds", "1")

    def per_node() -> dict[str, int]:
        out: dict[str, int] = {}
        for i in cluster.instances("web"):
            out[i["node"]] = out.get(i["node"], 0) + 1
        return out

    assert sorted(per_node().values()) == [3, 3]  # nothing moves by itself: rebalance is manual by default
    env = {**cluster.env, "DOCKYARD_URL": cluster.url, "DOCKYARD_TOKEN": ADMIN,
           "DOCKYARD_CONFIG": str(cluster.tmp / "cli.json")}
    dry = subprocess.run([DOCKYARD, "rebalance", "web", "--dry-run"], capture_output=True, text=True, env=env, timeout=60)
    assert dry.returncode == 0 and dry.stdout.count(f"-> {cluster.node('c')}") == 2, dry.stdout + dry.stderr
    stop, results = threading.Event(), []
    loads = [threading.Thread(target=_load, args=(ports["a"], "web.localhost", 40.0, stop, results)) for _ in range(2)]
    for t in loads:
        t.start()
    try:
        time.sleep(1)
        go = subprocess.run([DOCKYARD, "rebalance", "web"], capture_output=True, text=True, env=env, timeout=60)
        assert go.returncode == 0 and "rebalancing: 2 move(s)" in go.stdout, go.stdout + go.stderr
        wait_for(lambda: sorted(per_node().values()) == [2, 2, 2] and cluster.service("web")["status"]["ready"] == 6
                 and len(cluster.containers("web")) == 6, 120, 0.5, what="2/2/2, all ready, old containers gone")
        time.sleep(1.5)
    finally:
        stop.set()
        for t in loads:
            t.join(10)
    bad = [r for r in results if r != 200]
    assert len(results) > 200 and not bad, (len(results), bad[:5])
    wait_for(lambda: "rebalance_complete" in [e["kind"] for e in cluster.events(service="web")], 20,
             what="the rebalance_complete event")
    assert [e["kind"] for e in cluster.events(service="web")].count("rebalance_move") == 2
