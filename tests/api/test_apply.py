"""POST /v1/apply: every service checked first, then all written in one transaction or none."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from tests.api.principals import assert_error_shape, bearer, make_token

SPEC = {"image": "busybox:1", "command": ["sleep", "60"]}
SHOP = [{"name": "web", **SPEC, "replicas": 2, "stack": "shop"},
        {"name": "api", **SPEC, "stack": "shop"},
        {"name": "db", **SPEC, "env": {"MODE": "single-node"}, "stack": "shop"}]


def names(client) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(s["name"] for s in client.get("/v1/services").json())


def service_events(client) -> list[dict]:  # type: ignore[no-untyped-def]
    """Events of services that a caller made (the loop's own, e.g. unschedulable with no nodes, have no actor)."""
    return [e for e in client.get("/v1/events", params={"limit": 1000}).json() if e["service"] and e["actor"]]


def apply(client, services, **kw):  # type: ignore[no-untyped-def]
    return client.post("/v1/apply", json={"services": services, **kw})


def test_one_bad_service_among_three_creates_nothing_and_names_it(client):
    bad = [SHOP[0], {**SHOP[1], "replicas": -1, "colour": "red"}, SHOP[2]]
    err = assert_error_shape(apply(client, bad), 422, "validation_error")
    assert "service 'api' (services[1])" in err["message"] and "nothing was applied" in err["message"]
    assert "web" not in err["message"] and "db" not in err["message"]
    paths = {tuple(d["path"]): d for d in err["details"]}
    assert set(paths) == {("services", 1, "replicas"), ("services", 1, "colour")}
    assert paths[("services", 1, "colour")]["problem"] == "unknown field"
    assert all(d["service"] == "api" and d["field"] == ".".join(map(str, d["path"])) for d in err["details"])
    assert names(client) == [] and service_events(client) == []


def test_every_bad_service_is_listed(client):
    bad = [{**SHOP[0], "image": ""}, {"image": "x"}, "web", {**SHOP[2], "name": "Not_A_Label"}, {**SHOP[0]}]
    err = assert_error_shape(apply(client, bad), 422, "validation_error")
    assert err["message"].startswith("nothing was applied: 5 of 5 services refused: ")
    by_index = {d["path"][1]: d for d in err["details"]}
    assert set(by_index) == {0, 1, 2, 3, 4}
    assert by_index[1]["path"] == ["services", 1, "name"] and by_index[1]["service"] is None
    assert by_index[2]["path"] == ["services", 2] and "must be an object" in by_index[2]["problem"]
    assert by_index[3]["path"] == ["services", 3, "name"]
    assert "listed twice (also services[0])" in by_index[4]["problem"]
    assert names(client) == []


def test_all_good_are_created_with_one_revision_each(client):
    r = apply(client, SHOP)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["name"], x["action"]) for x in results] == [("web", "created"), ("api", "created"), ("db", "created")]
    for x in results:
        got = client.get(f"/v1/services/{x['name']}").json()
        assert {k: v for k, v in x["service"].items() if k != "status"} == {k: v for k, v in got.items() if k != "status"}
        assert got["revision"] == 1 and got["version"] == 1 and got["stack"] == "shop"
        assert [v["number"] for v in client.get(f"/v1/services/{x['name']}/revisions").json()] == [1]
    assert results[0]["service"]["replicas"] == 2
    assert results[2]["service"]["spec"]["env"] == {"MODE": "single-node"}
    created = [e for e in service_events(client) if e["kind"] == "service_created"]
    assert sorted(e["service"] for e in created) == ["api", "db", "web"]
    put = client.put("/v1/services/lone", json=SPEC)
    assert put.status_code == 201
    lone = next(e for e in client.get("/v1/events", params={"service": "lone"}).json()
                if e["kind"] == "service_created")  # not the loop's events (no actor) that may follow it
    assert {e["actor"] for e in created} == {lone["actor"]}  # the same audit trail as PUT
    assert {e["message"] for e in created if e["service"] == "web"} == {
        "service web created in stack shop with 2 replica(s), revision 1"}


def test_reapply_is_unchanged_and_writes_nothing(client):
    assert apply(client, SHOP).status_code == 200
    before = service_events(client)
    r = apply(client, SHOP)
    assert r.status_code == 200
    assert [x["action"] for x in r.json()["results"]] == ["unchanged"] * 3
    assert [x["service"]["version"] for x in r.json()["results"]] == [1, 1, 1]
    assert service_events(client) == before

    # one spec change, one replica change, one untouched: one new revision only
    changed = [{**SHOP[0], "image": "busybox:2"}, {**SHOP[1], "replicas": 3}, SHOP[2]]
    results = {x["name"]: x for x in apply(client, changed).json()["results"]}
    assert {n: x["action"] for n, x in results.items()} == {"web": "updated", "api": "updated", "db": "unchanged"}
    assert results["web"]["service"]["revision"] == 2 and results["web"]["service"]["version"] == 2
    assert results["api"]["service"]["revision"] == 1 and results["api"]["service"]["replicas"] == 3
    assert results["db"]["service"]["version"] == 1
    kinds = sorted((e["kind"], e["service"]) for e in service_events(client) if e not in before)
    assert kinds == [("service_scaled", "api"), ("service_updated", "web")]


def test_dry_run_answers_what_would_happen_and_writes_nothing(client):
    r = apply(client, SHOP, dry_run=True)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["action"] for x in results] == ["created"] * 3
    assert results[0]["service"]["revision"] == 1 and results[0]["service"]["replicas"] == 2
    assert names(client) == [] and service_events(client) == []

    apply(client, SHOP)
    before = service_events(client)
    r = apply(client, [{**SHOP[0], "image": "busybox:2"}, SHOP[1]], dry_run=True)
    assert [(x["action"], x["service"]["revision"]) for x in r.json()["results"]] == [("updated", 2), ("unchanged", 1)]
    assert client.get("/v1/services/web").json()["spec"]["image"] == "busybox:1"
    assert [v["number"] for v in client.get("/v1/services/web/revisions").json()] == [1]
    assert service_events(client) == before
    # a dry run refuses what the apply would refuse
    assert_error_shape(apply(client, [{**SHOP[0], "stack": "blog"}], dry_run=True), 409, "conflict")


def test_an_ownership_conflict_in_a_batch_writes_nothing(client):
    apply(client, SHOP[:1])
    blog = [{"name": "posts", **SPEC, "stack": "blog"}, {**SHOP[0], "image": "busybox:9", "stack": "blog"}]
    err = assert_error_shape(apply(client, blog), 409, "conflict")
    assert "service 'web' (services[1])" in err["message"]
    assert "belongs to stack 'shop'; delete it there or apply with stack 'shop'" in err["message"]
    assert [d["path"] for d in err["details"]] == [["services", 1, "stack"]]
    assert names(client) == ["web"]
    web = client.get("/v1/services/web").json()
    assert web["stack"] == "shop" and web["spec"]["image"] == "busybox:1" and web["version"] == 1


def test_policy_refusal_is_403_and_mixed_troubles_answer_the_first_kind(client):
    err = assert_error_shape(apply(client, [SHOP[0], {**SHOP[1], "privileged": True}]), 403, "forbidden")
    assert err["reason"] == "policy" and "service 'api'" in err["message"]
    assert [d["path"] for d in err["details"]] == [["services", 1, "privileged"]]
    apply(client, SHOP[:1])
    # invalid input, a policy refusal and an ownership conflict at once: 422, each one listed
    mixed = [{**SHOP[0], "stack": "blog"}, {**SHOP[1], "privileged": True}, {**SHOP[2], "replicas": "many"}]
    err = assert_error_shape(apply(client, mixed), 422, "validation_error")
    assert [d["path"] for d in err["details"]] == [["services", 0, "stack"], ["services", 1, "privileged"],
                                                    ["services", 2, "replicas"]]
    assert names(client) == ["web"]


def test_versions_are_checked_per_service(client):
    apply(client, SHOP[:2])
    r = apply(client, [{**SHOP[0], "image": "busybox:2", "version": 1}, {**SHOP[1], "replicas": 4, "version": 5}])
    err = assert_error_shape(r, 409, "conflict")
    assert [d["path"] for d in err["details"]] == [["services", 1, "version"]] and "version 1, not 5" in err["message"]
    assert client.get("/v1/services/web").json()["spec"]["image"] == "busybox:1"
    r = apply(client, [{**SHOP[0], "image": "busybox:2", "version": 1}, {**SHOP[1], "replicas": 4, "version": 1}])
    assert [x["service"]["version"] for x in r.json()["results"]] == [2, 2]


def test_a_failure_while_writing_commits_nothing(client, monkeypatch):
    """All or nothing past the checks too: the second write fails (a concurrent create, say), and
    the first one, already flushed in the same transaction, is rolled back with it."""
    from orchestrator import service_ops

    real, calls = service_ops.write, []

    def flaky(s, p, **kw):  # type: ignore[no-untyped-def]
        calls.append(p.name)
        if len(calls) == 2:
            raise IntegrityError("INSERT INTO services", {}, Exception("UNIQUE constraint failed: services.name"))
        return real(s, p, **kw)

    monkeypatch.setattr(service_ops, "write", flaky)
    assert_error_shape(apply(client, SHOP), 409, "conflict")
    assert calls == ["web", "api"]
    assert names(client) == [] and service_events(client) == []


def test_change_cause_header_yaml_body_and_empty_batch(client):
    r = client.post("/v1/apply", json={"services": SHOP[:1]}, headers={"X-Change-Cause": "release 7"})
    assert r.status_code == 200
    assert client.get("/v1/services/web/revisions").json()[0]["change_cause"] == "release 7"
    yml = "services:\n  - name: api\n    image: busybox:1\n    stack: shop\ndry_run: false\n"
    r = client.post("/v1/apply", content=yml, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 200 and r.json()["results"][0]["action"] == "created"
    assert client.post("/v1/apply", json={"services": []}).json() == {"results": []}
    assert_error_shape(client.post("/v1/apply", json={"services": [], "force": True}), 422, "validation_error")
    assert_error_shape(client.post("/v1/apply", json={}), 422, "validation_error")


def test_roles_and_body_limit(client, anon):
    assert_error_shape(anon.post("/v1/apply", json={"services": SHOP}), 401, "unauthorized")
    viewer = make_token(client, "viewer")
    assert_error_shape(anon.post("/v1/apply", json={"services": SHOP}, headers=bearer(viewer)), 403, "forbidden")
    operator = make_token(client, "operator")
    r = anon.post("/v1/apply", json={"services": SHOP[:1]}, headers=bearer(operator))
    assert r.status_code == 200
    assert client.get("/v1/events", params={"service": "web"}).json()[0]["actor"] == "token:t-operator"
    big = [{"name": f"s{i}", **SPEC, "env": {"PAD": "x" * 4000}, "stack": "big"} for i in range(300)]
    assert_error_shape(client.post("/v1/apply", json={"services": big}), 413, "payload_too_large")
    assert "s0" not in names(client)


def test_batch_size_is_bounded(client):
    many = [{"name": f"s{i}", "image": "x"} for i in range(1001)]
    assert_error_shape(client.post("/v1/apply", json={"services": many}), 422, "validation_error")
