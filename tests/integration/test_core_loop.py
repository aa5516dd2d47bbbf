"""The core loop end to end: API -> database -> reconcile -> agent -> real Docker containers."""
from __future__ import annotations

import signal

import pytest

from tests.harness import wait_for

pytestmark = pytest.mark.integration


def test_replicas_scale_and_delete(cluster):
    node = cluster.start_agent("a")
    r = cluster.put("web", replicas=3, env={"GREETING": "hi"}, resources={"memory": "32Mi", "cpus": 0.25})
    assert r.status_code == 201, r.text
    cs = cluster.wait_running("web", 3)
    for c in cs:
        labels = c.labels
        assert labels["dockyard.service"] == "web"
        assert labels["dockyard.node"] == node
        assert labels["dockyard.revision"] == "1"
        assert labels["dockyard.instance"]
        assert "GREETING=hi" in c.attrs["Config"]["Env"]
        assert c.attrs["HostConfig"]["Memory"] == 32 * 1024 * 1024
        assert c.attrs["HostConfig"]["NanoCpus"] == 250_000_000
    assert cluster.wait_ready("web", 3)["replicas"] == 3

    assert cluster.api.post("/v1/services/web/scale", json={"replicas": 5}).status_code == 200
    cluster.wait_running("web", 5)
    assert cluster.api.patch("/v1/services/web", json={"replicas": 1}).status_code == 200
    cluster.wait_running("web", 1)
    assert len(cluster.instances("web")) == 1

    assert cluster.api.delete("/v1/services/web").status_code == 202
    wait_for(lambda: not cluster.containers("web", running_only=False), 30, what="all containers removed")
    assert cluster.api.get("/v1/services/web").status_code == 404
    wait_for(lambda: cluster.api.get("/v1/instances", params={"all": True, "service": "web"}).json() == [], 15,
             what="instance records forgotten")


def test_reapply_identical_spec_is_a_noop(cluster):
    cluster.start_agent("a")
    assert cluster.put("api", replicas=2).status_code == 201
    before = {c.id for c in cluster.wait_running("api", 2)}
    r = cluster.put("api", replicas=2)
    assert r.status_code == 200
    assert r.json()["revision"] == 1 and r.json()["version"] == 1
    assert len(cluster.api.get("/v1/services/api/revisions").json()) == 1
    cluster.wait_ready("api", 2)
    assert {c.id for c in cluster.containers("api")} == before


def test_killed_container_comes_back_and_counts_the_restart(cluster):
    cluster.start_agent("a")
    cluster.put("worker", replicas=1)
    (c,) = cluster.wait_running("worker", 1)
    c.kill()
    wait_for(lambda: cluster.instances("worker")[0]["restart_count"] >= 1, 20, what="restart counted")
    (again,) = cluster.wait_running("worker", 1)
    assert again.id == c.id  # restarted in place, not replaced
    kinds = {e["kind"] for e in cluster.events(service="worker")}
    assert "service_created" in kinds


def test_restarted_agent_adopts_running_containers(cluster):
    cluster.start_agent("a")
    cluster.put("db", replicas=3)
    before = sorted(c.id for c in cluster.wait_running("db", 3))
    cluster.wait_ready("db", 3)
    # a clean restart (SIGTERM, an upgrade): a killed agent's node goes down after a 1 s grace
    # without a reconnect (tests/integration/test_node_loss.py)
    cluster.kill_agent("a", signal.SIGTERM)
    cluster.restart_agent("a")
    wait_for(lambda: cluster.service("db")["status"]["ready"] == 3, 20, what="ready again")
    # give the restarted agent several passes to (wrongly) start or remove anything
    import time

    time.sleep(3)
    after = sorted(c.id for c in cluster.containers("db", running_only=False))
    assert after == before


def test_restarted_server_loses_nothing(cluster):
    cluster.start_agent("a")
    cluster.put("cache", replicas=2)
    before = sorted(c.id for c in cluster.wait_running("cache", 2))
    cluster.stop_server(signal.SIGKILL)
    cluster.start_server()
    svc = cluster.service("cache")
    assert svc["replicas"] == 2 and svc["revision"] == 1
    # the loop carries on: a scale after the restart converges
    assert cluster.api.post("/v1/services/cache/scale", json={"replicas": 3}).status_code == 200
    cs = cluster.wait_running("cache", 3)
    assert set(before) <= {c.id for c in cs}


def test_start_failure_is_reported(cluster):
    cluster.start_agent("a")
    cluster.put("ghost", image="no-such-image:1", pull="never", replicas=1)
    inst = wait_for(lambda: [i for i in cluster.instances("ghost") if i["state"] == "failed"], 20,
                    what="failed instance")[0]
    assert "no-such-image:1" in inst["last_error"]
    assert "no-such-image" in cluster.service("ghost")["status"]["message"]
