"""Namespaces and spaces over the API, on SQLite and PostgreSQL: one service name in two
namespaces is two services, spaces form chains, tokens limited to namespaces see nothing
else (404, never 403), and the routes of a space may override its parent's."""
from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.api.principals import assert_error_shape, bearer, make_token
from tests.api.test_roles import OPERATIONS

SPEC = {"image": "busybox:1", "command": ["sleep", "60"], "replicas": 1}
WEB = {**SPEC, "expose": [{"port": 8080}]}


def ns(client, name: str, parent: str | None = None):  # type: ignore[no-untyped-def]
    r = client.post("/v1/namespaces", json={"name": name, "parent": parent})
    assert r.status_code == 201, r.text
    return r.json()


def test_default_exists_and_old_urls_mean_it(client):
    assert [n["name"] for n in client.get("/v1/namespaces").json()] == ["default"]
    assert client.put("/v1/services/web", json=SPEC).status_code == 201
    one = client.get("/v1/namespaces/default/services/web").json()
    assert one["name"] == "web" and one["namespace"] == "default"
    plain = client.get("/v1/services/web").json()
    assert {k: plain[k] for k in ("name", "namespace", "version", "spec")} == {k: one[k] for k in ("name", "namespace", "version", "spec")}


def test_one_name_in_two_namespaces_is_two_services(client):
    ns(client, "team")
    assert client.put("/v1/services/web", json=SPEC).status_code == 201
    r = client.put("/v1/namespaces/team/services/web", json={**SPEC, "replicas": 3})
    assert r.status_code == 201, r.text
    assert r.json()["namespace"] == "team" and r.json()["name"] == "web"
    assert client.get("/v1/services/web").json()["replicas"] == 1
    assert client.get("/v1/namespaces/team/services/web").json()["replicas"] == 3
    assert [s["namespace"] for s in client.get("/v1/services").json()] == ["default"]
    assert [s["namespace"] for s in client.get("/v1/namespaces/team/services").json()] == ["team"]
    # instances and events say which namespace they belong to, and filter by it
    team_instances = client.get("/v1/instances", params={"namespace": "team"}).json()
    assert {i["namespace"] for i in team_instances} <= {"team"}
    events = client.get("/v1/events", params={"namespace": "team", "service": "web"}).json()
    assert events and all(e["namespace"] == "team" and e["service"] == "web" for e in events)
    # the batch API too, and deleting one leaves the other
    r = client.post("/v1/namespaces/team/apply", json={"services": [{"name": "api", **SPEC}]})
    assert r.status_code == 200 and r.json()["results"][0]["service"]["namespace"] == "team"
    assert client.get("/v1/services/api").status_code == 404
    assert client.delete("/v1/namespaces/team/services/web").status_code == 202
    assert client.get("/v1/services/web").status_code == 200


def test_bad_namespaces_are_refused_and_change_nothing(client):
    assert_error_shape(client.post("/v1/namespaces", json={"name": "Not_A_Label"}), 422)
    assert_error_shape(client.post("/v1/namespaces", json={"name": "kid", "parent": "nobody"}), 422)
    assert_error_shape(client.post("/v1/namespaces", json={"name": "default"}), 409, "conflict")
    assert_error_shape(client.put("/v1/namespaces/nowhere/services/web", json=SPEC), 404, "not_found")
    assert_error_shape(client.get("/v1/namespaces/nowhere/services"), 404, "not_found")
    assert_error_shape(client.get("/v1/namespaces/UPPER/services"), 422)
    assert_error_shape(client.delete("/v1/namespaces/default"), 409, "conflict")
    assert [n["name"] for n in client.get("/v1/namespaces").json()] == ["default"]


def test_spaces_chain_and_a_parent_with_children_is_kept_unless_forced(client):
    ns(client, "dev")
    alice = ns(client, "alice", "dev")
    assert alice["chain"] == ["alice", "dev"]
    assert ns(client, "alice-fix", "alice")["chain"] == ["alice-fix", "alice", "dev"]
    listed = client.get("/v1/namespaces").json()
    assert [n["name"] for n in listed] == ["default", "dev", "alice", "alice-fix"]  # parents before children
    assert next(n for n in listed if n["name"] == "dev")["children"] == ["alice"]
    for svc in ("front", "api"):
        assert client.put(f"/v1/namespaces/dev/services/{svc}", json=SPEC).status_code == 201
    assert client.put("/v1/namespaces/alice/services/api", json=SPEC).status_code == 201
    got = client.get("/v1/namespaces/alice-fix").json()
    assert got["inherited"] == [{"name": "api", "from": "alice"}, {"name": "front", "from": "dev"}]
    err = assert_error_shape(client.delete("/v1/namespaces/dev"), 409, "conflict")
    assert "alice" in err["message"] and "force" in err["message"]
    assert client.get("/v1/namespaces/dev/services/front").status_code == 200  # nothing was deleted
    r = client.delete("/v1/namespaces/dev", params={"force": "true"})
    assert r.status_code == 202 and r.json()["deleted"] == ["dev", "alice", "alice-fix"]
    assert r.json()["services_deleted"] == 3
    assert [n["name"] for n in client.get("/v1/namespaces").json()] == ["default"]
    assert client.get("/v1/services").json() == []


def test_a_space_may_override_its_parents_routes_but_two_roots_may_not_share_one(client):
    ns(client, "dev")
    ns(client, "alice", "dev")
    ns(client, "bob", "dev")
    assert client.put("/v1/namespaces/dev/services/web", json=WEB).status_code == 201
    # a child, and its sibling, expose the same default host: each overrides dev for its own requests
    assert client.put("/v1/namespaces/alice/services/web", json=WEB).status_code == 201
    assert client.put("/v1/namespaces/bob/services/web", json=WEB).status_code == 201
    # default is a root like dev: web.localhost there would make a request without a space ambiguous
    err = assert_error_shape(client.put("/v1/services/web", json=WEB), 409, "conflict")
    assert "namespace dev" in err["message"]
    # inside one namespace a host belongs to one service, as before
    err = assert_error_shape(client.put("/v1/namespaces/alice/services/other", json={
        **SPEC, "expose": [{"port": 80, "host": "web.localhost"}]}), 409, "conflict")
    table = client.get("/v1/routes").json()
    assert {(r["namespace"], r["service"], r["host"]) for r in table["routes"]} == {
        ("dev", "web", "web.localhost"), ("alice", "web", "web.localhost"), ("bob", "web", "web.localhost")}
    assert table["spaces"] == {"default": None, "dev": None, "alice": "dev", "bob": "dev"}


def _url(path: str, namespace: str) -> str:
    values = {"ns": namespace, "name": "web", "number": "1", "a": "1", "b": "1"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def test_a_token_limited_to_a_namespace_sees_and_changes_nothing_else(client):
    ns(client, "team")
    ns(client, "other")
    for where in ("/v1/services/web", "/v1/namespaces/team/services/web"):
        assert client.put(where, json=SPEC).status_code == 201
    mine = make_token(client, "admin", "other-admin", namespaces=["other"])
    anon = TestClient(client.app)
    before = {w: client.get(w).json()["version"] for w in ("/v1/services/web", "/v1/namespaces/team/services/web")}
    # every operation on services, of default and of team, is a 404 for it: names do not leak
    checked = 0
    for method, path, _role in OPERATIONS:
        if not (path.startswith("/v1/services") or path == "/v1/apply" or path.startswith("/v1/namespaces/{ns}/")):
            continue
        for namespace in ("default", "team"):
            if namespace == "team" and "{ns}" not in path:
                continue
            body = {"services": [{"name": "web", **SPEC}]} if path.endswith("/apply") else (
                SPEC if method == "PUT" else {"replicas": 2} if method in ("PATCH", "POST") else None)
            r = anon.request(method, _url(path, namespace), json=body, headers=bearer(mine))
            err = assert_error_shape(r, 404, "not_found")
            assert "namespace" in err["message"], (method, path, err)
            checked += 1
    assert checked >= 25
    assert {w: client.get(w).json()["version"] for w in before} == before  # nothing changed
    # its own namespace works; the lists show only it
    assert anon.put("/v1/namespaces/other/services/web", json=SPEC, headers=bearer(mine)).status_code == 201
    assert [n["name"] for n in anon.get("/v1/namespaces", headers=bearer(mine)).json()] == ["other"]
    assert_error_shape(anon.get("/v1/namespaces/team", headers=bearer(mine)), 404)
    instances = anon.get("/v1/instances", headers=bearer(mine)).json()
    assert {i["namespace"] for i in instances} <= {"other"}
    assert_error_shape(anon.get("/v1/instances", params={"namespace": "team"}, headers=bearer(mine)), 404)
    events = anon.get("/v1/events", headers=bearer(mine)).json()
    assert events and {e["namespace"] for e in events} == {"other"}
    assert {r["namespace"] for r in anon.get("/v1/routes", headers=bearer(mine)).json()["routes"]} <= {"other"}
    # and it cannot make namespaces or tokens
    assert_error_shape(anon.post("/v1/namespaces", json={"name": "mine"}, headers=bearer(mine)), 403)
    assert_error_shape(anon.post("/v1/tokens", json={"name": "x", "role": "viewer"}, headers=bearer(mine)), 403)


def test_a_token_cannot_be_limited_to_a_namespace_that_does_not_exist(client):
    r = client.post("/v1/tokens", json={"name": "ghost", "role": "viewer", "namespaces": ["ghost"]})
    assert_error_shape(r, 422)
    assert "ghost" not in [t["name"] for t in client.get("/v1/tokens").json()]


def test_quotas_refuse_what_would_exceed_them_and_change_nothing(client):
    r = client.post("/v1/namespaces", json={"name": "small", "quotas": {"instances": 3, "cpus": 1, "memory": "256Mi"}})
    assert r.status_code == 201 and r.json()["quotas"] == {"instances": 3, "cpus": 1.0, "memory": 256 * 2**20}
    base = "/v1/namespaces/small/services"
    assert client.put(f"{base}/a", json={**SPEC, "replicas": 2}).status_code == 201
    err = assert_error_shape(client.put(f"{base}/b", json={**SPEC, "replicas": 2}), 403, "forbidden")
    assert "quota" in err["message"] and "instances: 4 > 3" in err["message"] and err["reason"] == "quota"
    assert client.get(f"{base}/b").status_code == 404
    assert client.post(f"{base}/a/scale", json={"replicas": 3}).status_code == 200
    assert_error_shape(client.post(f"{base}/a/scale", json={"replicas": 4}), 403)
    assert client.post(f"{base}/a/scale", json={"replicas": 1}).status_code == 200  # down is always allowed
    # resources count replicas x cpus (and memory)
    err = assert_error_shape(client.patch(f"{base}/a", json={"replicas": 2, "resources": {"cpus": 0.75}}), 403)
    assert "cpus: 1.5 > 1" in err["message"]
    assert_error_shape(client.put(f"{base}/m", json={**SPEC, "resources": {"memory": "512Mi"}}), 403)
    # a batch is all or nothing
    r = client.post("/v1/namespaces/small/apply", json={"services": [{"name": "c", **SPEC}, {"name": "d", **SPEC},
                                                                     {"name": "e", **SPEC}]})
    assert_error_shape(r, 403)
    assert [s["name"] for s in client.get(base).json()] == ["a"]
    # other namespaces are not limited by it; lifting the quota lets it grow
    assert client.put("/v1/services/big", json={**SPEC, "replicas": 10}).status_code == 201
    r = client.patch("/v1/namespaces/small", json={"quotas": None})
    assert r.status_code == 200 and r.json()["quotas"] is None
    assert client.put(f"{base}/b", json={**SPEC, "replicas": 5}).status_code == 201
    assert_error_shape(client.patch("/v1/namespaces/small", json={"quotas": {"instances": -1}}), 422)
