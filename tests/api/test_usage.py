"""Metrics in and out, the autoscaler and the rebalancer through the API (both databases),
with fake agents that report what they are assigned as running."""
from __future__ import annotations

import time
from typing import Callable

from fastapi.testclient import TestClient

from tests.api.principals import assert_error_shape, bearer, join_node, make_token

AUTO = {"min": 2, "max": 4, "target": 50}


class FakeAgent:
    def __init__(self, client: TestClient, name: str):
        self.client, self.name, self.cred = client, name, join_node(client, name)

    def tick(self) -> None:
        got = self.client.post("/v1/agent/sync", json={}, headers=bearer(self.cred)).json()["assignments"] or []
        report = [{"instance_id": a["instance_id"], "container_id": "c" + a["instance_id"], "state": "running",
                   "healthy": True} for a in got]
        self.client.post("/v1/agent/sync", json={"report": report}, headers=bearer(self.cred))

    def metrics(self, body: dict) -> int:
        return self.client.post("/v1/agent/metrics", json=body, headers=bearer(self.cred)).status_code


def until(agents: list[FakeAgent], fn: Callable[[], object], timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for a in agents:
            a.tick()
        out = fn()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def ready(client, name: str, n: int):  # type: ignore[no-untyped-def]
    def check():  # type: ignore[no-untyped-def]
        s = client.get(f"/v1/services/{name}").json()
        return s if s["status"]["ready"] == n and s["replicas"] == n and s["rollout"]["phase"] == "complete" else None
    return check


def automate(client) -> bool:  # type: ignore[no-untyped-def]
    return client.app.state.dy.automation.run_once()


def manual(client) -> None:  # type: ignore[no-untyped-def]
    """Stop the server's own automation round (every 5 s): the test runs each round itself."""
    client.app.state.dy.automation.stop()


def test_the_autoscaler_owns_the_count(client):  # type: ignore[no-untyped-def]
    r = client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 1, "autoscale": AUTO})
    assert r.status_code == 201 and r.json()["replicas"] == 2  # started within [min, max]
    err = assert_error_shape(client.post("/v1/services/web/scale", json={"replicas": 9}), 409, "conflict")
    assert "autoscaled between 2 and 4" in err["message"]
    again = client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 1, "autoscale": AUTO})
    assert again.json()["replicas"] == 2 and again.json()["revision"] == 1  # a re-applied manifest undoes nothing
    wider = client.put("/v1/services/web", json={"image": "busybox:1", "autoscale": {**AUTO, "max": 8}})
    assert wider.json()["revision"] == 1 and wider.json()["spec"]["autoscale"]["max"] == 8  # no restart
    assert any("(no restart)" in e["message"] for e in client.get("/v1/events?service=web").json())
    assert client.put("/v1/services/web", json={"image": "busybox:2", "autoscale": AUTO}).json()["revision"] == 2
    for bad, field in (({**AUTO, "max": 1}, "max"), ({**AUTO, "metric": "memory"}, "resources.memory"),
                       ({**AUTO, "metric": "rps"}, "expose"), ({**AUTO, "tolerance": 2}, "tolerance")):
        e = assert_error_shape(client.put("/v1/services/bad", json={"image": "busybox:1", "autoscale": bad}), 422)
        assert field in e["message"] or any(field in d["field"] or field in d["problem"] for d in e["details"]), e
    assert client.get("/v1/services/bad").status_code == 404


def test_metrics_in_and_out_and_scaling_both_ways(client):  # type: ignore[no-untyped-def]
    manual(client)
    agent = FakeAgent(client, "n1")
    spec = {"image": "busybox:1", "replicas": 1, "resources": {"cpus": 0.5},
            "autoscale": {"min": 1, "max": 5, "target": 50, "scale_down_stabilization": 0}}
    assert client.put("/v1/services/web", json=spec).status_code == 201
    until([agent], ready(client, "web", 1))
    ids = [i["id"] for i in client.get("/v1/services/web/instances").json()]
    assert agent.metrics({"window": 5, "instances": [{"instance_id": ids[0], "cpu": 0.75, "memory": 2**20}],
                          "traffic": [{"service": "web", "requests": 50, "latency_p95_ms": 12.5}]}) == 204
    m = client.get("/v1/services/web/metrics").json()
    assert m["cpu"]["average_percent"] == 150.0 and m["instances"][0]["cpu_percent"] == 150.0
    assert m["traffic"]["rps"] == 10.0 and m["traffic"]["latency_p95_ms"] == 12.5
    scrape = client.get("/metrics").text  # the same figures for Prometheus, read at scrape time
    assert 'dockyard_service_cpu_cores{namespace="default",service="web"} 0.75' in scrape
    assert 'dockyard_service_requests_per_second{namespace="default",service="web"} 10.0' in scrape
    viewer = make_token(client, "viewer")
    assert client.get("/v1/services/web/metrics", headers=bearer(viewer)).status_code == 200
    assert_error_shape(client.post("/v1/agent/metrics", json={"window": 5}), 403)  # agents only

    assert automate(client) is True
    assert client.get("/v1/services/web").json()["replicas"] == 3  # ceil(1 x 150 / 50)
    event = [e for e in client.get("/v1/events?service=web").json() if e["kind"] == "autoscaled"][-1]
    assert event["message"].startswith("cpu 150% against a target of 50%: 1 -> 3"), event
    until([agent], ready(client, "web", 3))
    ids = [i["id"] for i in client.get("/v1/services/web/instances").json()]
    agent.metrics({"window": 5, "instances": [{"instance_id": i, "cpu": 0.02} for i in ids]})
    automate(client)
    assert client.get("/v1/services/web").json()["replicas"] == 1  # 4 % of the request: down to min
    assert automate(client) is False  # nothing changes without a reason


def test_figures_of_a_silent_node_age_out(client):  # type: ignore[no-untyped-def]
    manual(client)
    agent = FakeAgent(client, "n1")
    client.put("/v1/services/web", json={"image": "busybox:1", "autoscale": {"min": 1, "max": 3, "target": 50}})
    until([agent], ready(client, "web", 1))
    iid = client.get("/v1/services/web/instances").json()[0]["id"]
    agent.metrics({"window": 0.01, "instances": [{"instance_id": iid, "cpu": 3.0}]})
    time.sleep(5.2)  # older than three windows and one evaluation period
    assert client.get("/v1/services/web/metrics").json()["cpu"]["cores"] is None
    automate(client)
    assert client.get("/v1/services/web").json()["replicas"] == 1


def test_rebalance_dry_run_then_for_real(client):  # type: ignore[no-untyped-def]
    manual(client)
    a, b = FakeAgent(client, "n1"), FakeAgent(client, "n2")
    assert client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 4,
                                                "placement": {"rebalance_max_moves": 2}}).status_code == 201
    until([a, b], ready(client, "web", 4))
    c = FakeAgent(client, "n3")
    plan = client.post("/v1/services/web/rebalance?dry_run=true").json()
    assert plan["dry_run"] and not plan["balanced"] and plan["nodes"] == ["n1", "n2", "n3"]
    assert [m["to"] for m in plan["moves"]] == ["n3"]  # 2/2/0 -> one move gives 2/1/1 (or 1/2/1)
    assert not any(e["kind"] == "rebalance_requested" for e in client.get("/v1/events?service=web").json())
    done = client.post("/v1/services/web/rebalance").json()
    assert done["moves"] == plan["moves"]

    def spread():  # type: ignore[no-untyped-def]
        automate(client)
        nodes = sorted(i["node"] for i in client.get("/v1/services/web/instances").json())
        s = client.get("/v1/services/web").json()
        return nodes if s["status"]["ready"] == 4 and len(nodes) == 4 and "n3" in nodes else None

    nodes = until([a, b, c], spread)
    assert sorted(nodes.count(n) for n in ("n1", "n2", "n3")) == [1, 1, 2]
    kinds = [e["kind"] for e in client.get("/v1/events?service=web").json()]
    assert "rebalance_move" in kinds and "instance_drained" in kinds
    until([a, b, c], lambda: automate(client) is False and "rebalance_complete" in
          [e["kind"] for e in client.get("/v1/events?service=web").json()])
    assert client.post("/v1/services/web/rebalance?dry_run=true").json()["balanced"] is True


def test_rebalance_never_and_bad_input(client):  # type: ignore[no-untyped-def]
    client.put("/v1/services/web", json={"image": "busybox:1", "placement": {"rebalance": "never"}})
    assert "'never'" in assert_error_shape(client.post("/v1/services/web/rebalance"), 409)["message"]
    assert_error_shape(client.post("/v1/services/nope/rebalance"), 404)
    assert_error_shape(client.put("/v1/services/x", json={"image": "a", "placement": {"rebalance": "sometimes"}}), 422)


def test_auto_rebalance_when_a_node_joins(client):  # type: ignore[no-untyped-def]
    manual(client)
    a = FakeAgent(client, "n1")
    assert client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 2,
                                                "placement": {"rebalance": "auto"}}).status_code == 201
    until([a], ready(client, "web", 2))
    assert automate(client) is False  # one node, balanced: it only learns the nodes
    b = FakeAgent(client, "n2")

    def spread():  # type: ignore[no-untyped-def]
        automate(client)
        nodes = sorted(i["node"] for i in client.get("/v1/services/web/instances").json())
        return nodes == ["n1", "n2"] and client.get("/v1/services/web").json()["status"]["ready"] == 2

    until([a, b], spread)
    assert "rebalance_move" in [e["kind"] for e in client.get("/v1/events?service=web").json()]
