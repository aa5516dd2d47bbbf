"""Routes in the spec, the routing table handed to agents with their sync, and endpoints."""
from __future__ import annotations

import threading
import time

from tests.api.principals import assert_error_shape, bearer, join_node

SPEC = {"image": "busybox:1", "command": ["httpd", "-f", "-p", "8080"], "replicas": 1,
        "expose": [{"port": 8080}]}


def _placed(client, cred: str, n: int) -> list[dict]:  # type: ignore[no-untyped-def]
    for _ in range(200):  # until the loop placed them and the agent has them
        got = client.post("/v1/agent/sync", json={}, headers=bearer(cred)).json()["assignments"]
        if got and len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError("nothing placed")


def _until(fn, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError("condition never held")


def test_expose_is_validated(client):
    for bad in ({"port": 0}, {"port": 80, "host": "Not A Host"}, {"port": 80, "host": "web.localhost:8000"},
                {"port": 80, "path_prefix": "api"}, {"port": 80, "path_prefix": "/a/../b"}, {"port": 80, "extra": 1}):
        r = client.put("/v1/services/web", json={**SPEC, "expose": [bad]})
        body = assert_error_shape(r, 422, "validation_error")
        assert any("expose" in d["field"] for d in body["details"]), body
    r = client.put("/v1/services/web", json={**SPEC, "expose": [{"port": 80}, {"port": 81}]})
    assert_error_shape(r, 422)  # the same (default host, /) twice
    r = client.put("/v1/services/web", json={**SPEC, "network_mode": "none"})
    assert_error_shape(r, 422)
    assert client.get("/v1/services/web").status_code == 404  # nothing was created


def test_a_host_and_prefix_belong_to_one_service(client):
    assert client.put("/v1/services/web", json={**SPEC, "expose": [{"port": 8080, "host": "shop.localhost"}]}).status_code == 201
    r = client.put("/v1/services/api", json={**SPEC, "expose": [{"port": 8080, "host": "shop.localhost"}]})
    body = assert_error_shape(r, 409, "conflict")
    assert "'web'" in body["message"] and body["details"][0]["field"] == "expose"
    assert client.get("/v1/services/api").status_code == 404
    # another prefix on the same host is fine, and so is the default host
    assert client.put("/v1/services/api", json={**SPEC, "expose": [{"port": 8080, "host": "shop.localhost",
                                                                  "path_prefix": "/api/"}]}).status_code == 201
    # a batch is all or nothing: the second document takes the first one's route
    r = client.post("/v1/apply", json={"services": [
        {"name": "one", **SPEC, "expose": [{"port": 1, "host": "x.localhost"}]},
        {"name": "two", **SPEC, "expose": [{"port": 2, "host": "x.localhost"}]}]})
    assert r.status_code == 409, r.text
    assert client.get("/v1/services/one").status_code == 404


def test_services_racing_for_one_route_get_it_once(client):
    """Six creates at once, each exposing the same host: one wins, five are told 409 — on
    PostgreSQL too, where each transaction alone would not see the others' rows."""
    from fastapi.testclient import TestClient

    codes: dict[str, int] = {}
    go = threading.Barrier(6)

    def create(name: str) -> None:
        c = TestClient(client.app, headers=client.headers)
        go.wait()
        codes[name] = c.put(f"/v1/services/{name}", json={**SPEC, "expose": [{"port": 8080, "host": "race.localhost"}]}).status_code

    threads = [threading.Thread(target=create, args=(f"s{k}",)) for k in range(6)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert sorted(codes.values()) == [201, 409, 409, 409, 409, 409], codes
    owners = [r for r in client.get("/v1/routes").json()["routes"] if r["host"] == "race.localhost"]
    assert len(owners) == 1, owners


def test_routes_reach_agents_with_ready_endpoints_only(client):
    cred = join_node(client, "n1", address="10.9.8.7")
    assert client.put("/v1/services/web", json={**SPEC, "replicas": 2}).status_code == 201
    got = _placed(client, cred, 2)
    first = client.post("/v1/agent/sync", json={"routes_known": ""}, headers=bearer(cred)).json()
    assert first["routes"] == [{"service": "web", "namespace": "default", "host": "web.localhost",
                                "path_prefix": "/", "port": 8080, "endpoints": []}]
    version = first["routes_version"]
    # an agent without a gateway is sent no table
    assert client.post("/v1/agent/sync", json={}, headers=bearer(cred)).json()["routes"] is None

    # a long poll with the current table waits; a report that makes an instance ready ends it
    answer: dict = {}

    def poll() -> None:
        answer.update(client.post("/v1/agent/sync", json={"known": first["generation"], "wait": 10,
                                                          "routes_known": version}, headers=bearer(cred)).json())

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    assert not answer  # still waiting
    report = [{"instance_id": got[0]["instance_id"], "container_id": "c1", "state": "running",
               "host_ports": [{"container_port": 8080, "host_port": 32001, "protocol": "tcp"}]},
              {"instance_id": got[1]["instance_id"], "container_id": "c2", "state": "starting",
               "host_ports": [{"container_port": 8080, "host_port": 32002, "protocol": "tcp"}]}]
    started = time.monotonic()
    assert client.post("/v1/agent/sync", json={"report": report}, headers=bearer(cred)).status_code == 200
    t.join(10)
    assert time.monotonic() - started < 5  # woken by the change, not by the 10-s timeout
    assert answer["routes_version"] != version
    assert answer["routes"][0]["endpoints"] == [{"instance_id": got[0]["instance_id"], "node": "n1",
                                                 "address": "10.9.8.7", "port": 32001}]
    eps = client.get("/v1/services/web/endpoints").json()
    assert eps["endpoints"] == [{"instance_id": got[0]["instance_id"], "node": "n1", "address": "10.9.8.7",
                                 "ports": [{"container_port": 8080, "host_port": 32001}]}]
    assert eps["routes"] == [{"host": "web.localhost", "path_prefix": "/", "port": 8080, "url": "http://web.localhost"}]
    table = client.get("/v1/routes").json()
    assert table["version"] == answer["routes_version"] and table["routes"] == answer["routes"]

    # an unhealthy instance leaves the table
    report[0]["healthy"] = False
    client.post("/v1/agent/sync", json={"report": report}, headers=bearer(cred))
    _until(lambda: client.get("/v1/routes").json()["routes"][0]["endpoints"] == [])

    # scaled down: the instance the loop stops leaves the table before its container goes
    report[0]["healthy"], report[1]["state"] = True, "running"
    client.post("/v1/agent/sync", json={"report": report}, headers=bearer(cred))
    _until(lambda: len(client.get("/v1/routes").json()["routes"][0]["endpoints"]) == 2)
    assert client.post("/v1/services/web/scale", json={"replicas": 1}).status_code == 200
    _until(lambda: len(client.get("/v1/routes").json()["routes"][0]["endpoints"]) == 1)

    # deleted: its route goes
    assert client.delete("/v1/services/web").status_code == 202
    _until(lambda: client.get("/v1/routes").json()["routes"] == [])


def test_endpoints_of_unknown_service_is_404(client):
    assert_error_shape(client.get("/v1/services/nope/endpoints"), 404, "not_found")
