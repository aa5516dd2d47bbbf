"""The services API: create-or-update semantics, error shapes, auth, YAML bodies, OpenAPI."""
from __future__ import annotations

import pytest

GOOD = {"image": "busybox:1", "replicas": 2}


def assert_error(r, status: int, code: str, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] == code and isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], list)
    for d in err["details"]:
        assert set(d) >= {"field", "problem"}
    if field is not None:
        assert field in [d["field"] for d in err["details"]], err
    return err


def test_create_then_update_then_noop(client):
    r = client.put("/v1/services/web", json=GOOD)
    assert r.status_code == 201
    assert r.json()["revision"] == 1 and r.json()["version"] == 1
    assert r.headers["ETag"] == '"1"'
    r = client.put("/v1/services/web", json=GOOD)
    assert r.status_code == 200 and r.json()["version"] == 1  # identical: nothing changed
    r = client.put("/v1/services/web", json={**GOOD, "env": {"A": "1"}})
    assert r.json()["revision"] == 2 and r.json()["version"] == 2
    r = client.put("/v1/services/web", json={**GOOD, "env": {"A": "1"}, "replicas": 4})
    assert r.json()["revision"] == 2 and r.json()["replicas"] == 4  # replicas make no revision
    revs = client.get("/v1/services/web/revisions").json()
    assert [x["number"] for x in revs] == [2, 1]
    assert revs[0]["change_cause"] == "env.A changed"


def test_yaml_body(client):
    body = "image: busybox:1\nreplicas: 3\nenv:\n  MODE: yaml\n"
    r = client.put("/v1/services/yml", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["env"] == {"MODE": "yaml"} and r.json()["replicas"] == 3
    r = client.put("/v1/services/yml", content="image: [unclosed", headers={"Content-Type": "application/yaml"})
    assert_error(r, 400, "bad_request")


def test_json_without_content_type(client):
    r = client.put("/v1/services/plain", content=b'{"image": "busybox:1"}', headers={"Content-Type": ""})
    assert r.status_code == 201, r.text


def test_patch_scale_delete(client):
    client.put("/v1/services/web", json=GOOD)
    r = client.patch("/v1/services/web", json={"replicas": 5})
    assert r.status_code == 200 and r.json()["replicas"] == 5
    r = client.post("/v1/services/web/scale", json={"replicas": 1})
    assert r.status_code == 200 and r.json()["replicas"] == 1
    r = client.patch("/v1/services/web", json={"env": {"X": "y"}})
    assert r.json()["spec"]["env"] == {"X": "y"} and r.json()["revision"] == 2
    r = client.patch("/v1/services/web", json={"env": None})  # merge patch: null removes
    assert r.json()["spec"]["env"] == {}
    assert client.delete("/v1/services/web").status_code == 202
    assert_error(client.get("/v1/services/web"), 404, "not_found")


BAD_INPUTS = [
    ("Bad_Name", GOOD, 422, "name"),
    ("-x", GOOD, 422, "name"),
    ("a" * 64, GOOD, 422, "name"),
    ("ok", {**GOOD, "replicas": -1}, 422, "replicas"),
    ("ok", {**GOOD, "replicas": "many"}, 422, "replicas"),
    ("ok", {**GOOD, "image": ""}, 422, "image"),
    ("ok", {**GOOD, "image": "   "}, 422, "image"),
    ("ok", {"replicas": 1}, 422, "image"),
    ("ok", {**GOOD, "colour": "blue"}, 422, "colour"),
    ("ok", {**GOOD, "resources": {"memory": "lots"}}, 422, "resources.memory"),
    ("ok", {**GOOD, "resources": {"memory": "1Ki"}}, 422, "resources.memory"),
    ("ok", {**GOOD, "resources": {"cpus": -1}}, 422, "resources.cpus"),
    ("ok", {**GOOD, "ports": [{"container_port": 0}]}, 422, "ports.0.container_port"),
    ("ok", {**GOOD, "ports": [{"container_port": 80, "protocol": "sctp"}]}, 422, "ports.0.protocol"),
    ("ok", {**GOOD, "env": {"A=B": "x"}}, 422, "env"),
    ("ok", {**GOOD, "labels": {"dockyard.node": "x"}}, 422, "labels"),
    ("ok", {**GOOD, "restart": {"policy": "sometimes"}}, 422, "restart.policy"),
    ("ok", {**GOOD, "placement": {"constraints": ["zone ~ a"]}}, 422, "placement.constraints"),
    ("ok", {**GOOD, "update": {"max_surge": 0, "max_unavailable": 0}}, 422, "update"),
    ("ok", {**GOOD, "health": {"type": "http"}}, 422, "health"),
    ("ok", {**GOOD, "stop_timeout": -5}, 422, "stop_timeout"),
    ("ok", [1, 2], 422, None),
    ("ok", "just a string", 422, None),
]


@pytest.mark.parametrize("name,body,status,field", BAD_INPUTS)
def test_bad_inputs_are_refused_and_change_nothing(client, name, body, status, field):
    r = client.put(f"/v1/services/{name}", json=body)
    assert_error(r, status, "validation_error", field)
    assert client.get("/v1/services").json() == []


def test_not_json_at_all(client):
    r = client.put("/v1/services/x", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_bad_scale_and_patch(client):
    client.put("/v1/services/web", json=GOOD)
    assert_error(client.post("/v1/services/web/scale", json={"replicas": -2}), 422, "validation_error", "replicas")
    assert_error(client.post("/v1/services/web/scale", json={}), 422, "validation_error", "replicas")
    assert_error(client.patch("/v1/services/web", json={"replicas": -2}), 422, "validation_error", "replicas")
    assert_error(client.patch("/v1/services/web", json={"bogus": 1}), 422, "validation_error", "bogus")
    assert_error(client.post("/v1/services/nope/scale", json={"replicas": 1}), 404, "not_found")
    assert_error(client.delete("/v1/services/nope"), 404, "not_found")
    assert client.get("/v1/services/web").json()["replicas"] == 2


def test_version_conflicts(client):
    client.put("/v1/services/web", json=GOOD)
    r = client.put("/v1/services/web", json={**GOOD, "replicas": 3, "version": 7})
    err = assert_error(r, 409, "conflict")
    assert err["current_version"] == 1
    r = client.put("/v1/services/web", json={**GOOD, "replicas": 3}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert_error(client.patch("/v1/services/web", json={"replicas": 1}, headers={"If-Match": '"1"'}), 409, "conflict")
    assert_error(client.put("/v1/services/web", json=GOOD, headers={"If-Match": "abc"}), 400, "bad_request")


def test_auth_required(anon):
    for method, path in [("GET", "/v1/services"), ("PUT", "/v1/services/x"), ("GET", "/v1/nodes"),
                         ("GET", "/v1/events"), ("GET", "/v1/instances"), ("GET", "/metrics")]:
        assert_error(anon.request(method, path, json=GOOD), 401, "unauthorized")
        assert_error(anon.request(method, path, json=GOOD, headers={"Authorization": "Bearer wrong"}), 401,
                     "unauthorized")
    assert anon.get("/healthz").status_code == 200
    assert anon.get("/readyz").json()["checks"] == {"database": True, "loop": True}


def test_unknown_route_and_method(client):
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.post("/v1/services"), 405, "method_not_allowed")


def test_metrics_and_openapi(client):
    client.put("/v1/services/web", json=GOOD)
    text = client.get("/metrics").text
    assert "dockyard_reconcile_pass_seconds" in text and "dockyard_pending_instances" in text
    spec = client.get("/openapi.json").json()
    assert "ServiceApply" in spec["components"]["schemas"]
    put = spec["paths"]["/v1/services/{name}"]["put"]
    assert {"201", "409", "422"} <= set(put["responses"])
    assert client.get("/docs").status_code == 200


def test_unschedulable_without_nodes_is_explained(client):
    import time

    client.put("/v1/services/web", json=GOOD)
    deadline = time.time() + 10
    while time.time() < deadline:
        msg = client.get("/v1/services/web").json()["status"]["message"]
        if "0/0 nodes available" in msg:
            break
        time.sleep(0.2)
    assert "0/0 nodes available" in msg
    kinds = [e["kind"] for e in client.get("/v1/events", params={"service": "web"}).json()]
    assert "unschedulable" in kinds and kinds[-1] == "service_created"
