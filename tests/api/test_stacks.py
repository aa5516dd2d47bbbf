"""Server-side stacks and releases (PUT /v1/stacks/{name}): one transaction for the whole
application, numbered releases, diffs, rollback to a release, 409 while a release rolls out,
and the leader's atomic rollback of a failed release, on SQLite and PostgreSQL.

A fake agent (join + sync) reports what it is given as running, healthy or not, so rollouts
complete or fail without Docker."""
from __future__ import annotations

import threading
import time
from typing import Callable

from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from tests.api.conftest import ADMIN, JOIN
from tests.api.principals import assert_error_shape, bearer, join_node


def svc(name: str, image: str = "busybox:1", **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"name": name, "image": image, "command": ["sleep", "60"], "replicas": 1,
            "update": {"max_surge": 1, "max_unavailable": 0}, **extra}


SHOP = [svc("front"), svc("api"), svc("db")]


class FakeAgent:
    """Reports every instance it is assigned as running; `sick(assignment)` says which are unhealthy."""

    def __init__(self, client: TestClient, name: str = "n1"):
        self.client, self.cred = client, join_node(client, name)
        self.sick: Callable[[dict], bool] = lambda a: False

    def tick(self) -> None:
        got = self.client.post("/v1/agent/sync", json={}, headers=bearer(self.cred)).json()["assignments"] or []
        report = [{"instance_id": a["instance_id"], "container_id": "c" + a["instance_id"], "state": "running",
                   "healthy": not self.sick(a)} for a in got]
        self.client.post("/v1/agent/sync", json={"report": report}, headers=bearer(self.cred))

    def until(self, fn, timeout: float = 20.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            out = fn()
            if out:
                return out
            time.sleep(0.05)
        raise AssertionError("condition not met in time")


def state(client, name: str = "shop") -> dict:  # type: ignore[no-untyped-def]
    r = client.get(f"/v1/stacks/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def deployed(agent: FakeAgent, name: str = "shop", release: int | None = None) -> dict:
    def ok():  # type: ignore[no-untyped-def]
        st = state(agent.client, name)
        return st if st["state"] == "deployed" and (release is None or st["release"] == release) else None
    return agent.until(ok)


def put(client, services, name: str = "shop", **extra):  # type: ignore[no-untyped-def]
    return client.put(f"/v1/stacks/{name}", json={"services": services, **extra})


def revisions(client) -> dict:  # type: ignore[no-untyped-def]
    return {s["name"]: s["revision"] for s in client.get("/v1/services").json()}


def test_install_upgrade_releases_and_diff(client):
    agent = FakeAgent(client)
    r = put(client, SHOP, values={"tier": "small"}, description="first")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["action"], body["release"]) == ("created", 1)
    assert [c["action"] for c in body["changes"]] == ["created"] * 3
    assert body["stack"]["state"] == "rolling"
    assert {s["stack"] for s in client.get("/v1/services").json()} == {"shop"}
    st = deployed(agent, release=1)
    assert {s["name"]: (s["revision"], s["release_revision"], s["ready"]) for s in st["services"]} == {
        "front": (1, 1, 1), "api": (1, 1, 1), "db": (1, 1, 1)}

    # the same body again: no release, nothing written
    again = put(client, SHOP, values={"tier": "small"})
    assert again.status_code == 200 and (again.json()["action"], again.json()["release"]) == ("unchanged", 1)

    # two services change, with new values
    up = put(client, [svc("front", "busybox:2"), svc("api", "busybox:2"), svc("db")], values={"tier": "big"})
    assert up.status_code == 200 and up.json()["release"] == 2
    assert {c["service"]: c["action"] for c in up.json()["changes"]} == {"front": "updated", "api": "updated",
                                                                         "db": "unchanged"}
    deployed(agent, release=2)
    assert revisions(client) == {"front": 2, "api": 2, "db": 1}
    rels = client.get("/v1/stacks/shop/releases").json()
    assert [(x["number"], x["status"], x["current"]) for x in rels] == [(2, "deployed", True), (1, "superseded", False)]
    assert rels[1]["services"] == {"api": {"revision": 1, "replicas": 1}, "db": {"revision": 1, "replicas": 1},
                                   "front": {"revision": 1, "replicas": 1}}
    assert rels[0]["values"] == {"tier": "big"} and rels[1]["description"] == "first"
    one = client.get("/v1/stacks/shop/releases/1").json()
    assert one["services"]["front"]["spec"]["image"] == "busybox:1"

    d = client.get("/v1/stacks/shop/releases/1/diff/2").json()
    by = {x["service"]: x for x in d["services"]}
    assert by["front"]["action"] == "updated" and by["db"]["action"] == "unchanged"
    assert by["front"]["changes"] == [{"field": "image", "from": "busybox:1", "to": "busybox:2"}]
    assert by["front"]["revision"] == {"from": 1, "to": 2}
    assert d["values"] == [{"field": "tier", "from": "small", "to": "big"}]
    assert_error_shape(client.get("/v1/stacks/shop/releases/1/diff/9"), 404, "not_found")
    listed = client.get("/v1/stacks").json()
    assert [(x["name"], x["release"], x["state"]) for x in listed] == [("shop", 2, "deployed")]


def test_one_bad_service_of_five_changes_nothing(client):
    five = [svc(f"s{i}") for i in range(5)]
    bad = [dict(x) for x in five]
    bad[2] = {**bad[2], "replicas": -1}
    err = assert_error_shape(put(client, bad), 422, "validation_error")
    assert "nothing was applied" in err["message"] and "s2" in err["message"]
    assert any(d["field"] == "services.2.replicas" for d in err["details"])
    assert_error_shape(client.get("/v1/stacks/shop"), 404, "not_found")
    assert client.get("/v1/services").json() == []

    # a service the policy refuses (host privileges without --allow): 403, still nothing
    forbidden = [dict(x) for x in five]
    forbidden[4] = {**forbidden[4], "privileged": True}
    assert_error_shape(put(client, forbidden), 403, "forbidden")
    assert client.get("/v1/services").json() == []

    # on an existing stack: one service that belongs to another stack refuses the whole update
    agent = FakeAgent(client)
    assert put(client, five).status_code == 201
    deployed(agent)
    assert client.put("/v1/services/other", json={"image": "busybox:1", "stack": "blog"}).status_code == 201
    before = {s["name"]: s["version"] for s in client.get("/v1/services").json()}
    changed = [svc(f"s{i}", "busybox:2") for i in range(4)] + [svc("other")]
    err = assert_error_shape(put(client, changed), 409, "conflict")
    assert "belongs to stack 'blog'" in err["message"]
    assert {s["name"]: s["version"] for s in client.get("/v1/services").json()} == before
    assert state(client)["release"] == 1 and len(client.get("/v1/stacks/shop/releases").json()) == 1

    # a service naming another stack in its body is refused too
    err = assert_error_shape(put(client, [svc("s0", stack="blog")]), 422, "validation_error")
    assert err["details"][0]["field"] == "services.0.stack"


def test_any_one_refusal_anywhere_in_the_stack_refuses_it_all(client):
    assert client.put("/v1/services/owned", json={"image": "busybox:1", "stack": "blog"}).status_code == 201
    bad = {422: {"replicas": "many"}, 403: {"privileged": True}, 409: None}
    for status, change in bad.items():
        for index in range(5):
            five = [svc(f"s{i}") for i in range(5)]
            five[index] = svc("owned") if change is None else {**five[index], **change}
            err = assert_error_shape(put(client, five), status)
            assert f"services[{index}]" in err["message"]
            assert client.get("/v1/stacks").json() == []
            assert [s["name"] for s in client.get("/v1/services").json()] == ["owned"]


def test_prune_or_keep(client):
    agent = FakeAgent(client)
    assert put(client, SHOP).status_code == 201
    deployed(agent)
    assert put(client, SHOP[:2], prune=False).json()["action"] == "unchanged"  # db kept: nothing changes
    kept = put(client, [svc("front", "busybox:2"), SHOP[1]], prune=False)
    assert kept.status_code == 200 and kept.json()["release"] == 2
    assert sorted(revisions(client)) == ["api", "db", "front"]
    assert sorted(client.get("/v1/stacks/shop/releases/2").json()["services"]) == ["api", "db", "front"]
    deployed(agent, release=2)
    pruned = put(client, [svc("front", "busybox:2"), SHOP[1]])
    assert pruned.status_code == 200, pruned.text
    assert {c["service"]: c["action"] for c in pruned.json()["changes"]}["db"] == "deleted"
    assert sorted(revisions(client)) == ["api", "front"]
    rel = client.get("/v1/stacks/shop/releases/3").json()
    assert sorted(rel["services"]) == ["api", "front"]


def test_a_change_while_a_release_rolls_out_is_409(client):
    assert put(client, SHOP).status_code == 201  # no agent: it stays rolling
    assert state(client)["state"] == "rolling"
    err = assert_error_shape(put(client, [svc("front", "busybox:2"), *SHOP[1:]]), 409, "conflict")
    assert "another operation is in progress" in err["message"]
    assert (err["release"], err["state"]) == (1, "rolling")
    assert put(client, SHOP).status_code == 200  # unchanged: fine
    assert_error_shape(client.post("/v1/stacks/shop/rollback", json={"release": 1}), 409, "conflict")
    assert revisions(client) == {"front": 1, "api": 1, "db": 1}


def test_racing_installs_one_wins(client):
    codes: list[int] = []

    def go(i: int) -> None:
        codes.append(put(client, [svc("front", f"busybox:{i}"), svc("api")]).status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201, 409, 409, 409], codes
    assert len(client.get("/v1/stacks/shop/releases").json()) == 1


def test_racing_upgrades_of_a_deployed_stack_one_wins(client):
    agent = FakeAgent(client)
    assert put(client, SHOP).status_code == 201
    deployed(agent)
    codes: list[int] = []

    def go(i: int) -> None:
        codes.append(put(client, [svc("front", f"busybox:{i + 2}"), *SHOP[1:]]).status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409], codes
    assert [x["number"] for x in client.get("/v1/stacks/shop/releases").json()] == [2, 1]
    assert revisions(client)["front"] == 2


def test_failed_upgrade_rolls_the_whole_stack_back(client):
    agent = FakeAgent(client)
    assert put(client, SHOP, values={"v": 1}).status_code == 201
    deployed(agent, release=1)
    assert put(client, [svc("front", "busybox:2"), svc("api", "busybox:2"), svc("db")], values={"v": 2}).status_code == 200
    deployed(agent, release=2)
    # release 3: api's new revision is never healthy; front's is fine
    agent.sick = lambda a: a["service"] == "api" and a["spec"]["image"] == "busybox:3"
    assert put(client, [svc("front", "busybox:3"), svc("api", "busybox:3"), svc("db")]).status_code == 200
    st = agent.until(lambda: (x := state(client))["state"] == "rolled_back" and x)
    assert st["release"] == 2
    assert "release 3 failed" in st["reason"] and "service api" in st["reason"] and "release 2" in st["reason"]
    assert revisions(client) == {"front": 2, "api": 2, "db": 1}  # front too, though it was healthy
    rels = {x["number"]: x for x in client.get("/v1/stacks/shop/releases").json()}
    assert (rels[3]["status"], rels[2]["status"]) == ("failed", "deployed")
    assert "service api" in rels[3]["reason"]
    agent.sick = lambda a: False
    agent.until(lambda: all(s["ready"] == 1 for s in state(client)["services"]))
    kinds = [e["kind"] for e in client.get("/v1/events").json()]
    assert "stack_rolled_back" in kinds


def test_the_automatic_rollback_brings_back_a_pruned_service(client):
    agent = FakeAgent(client)
    assert put(client, SHOP).status_code == 201
    deployed(agent)
    agent.sick = lambda a: a["spec"]["image"] == "busybox:2"
    assert put(client, [svc("front", "busybox:2"), svc("api")]).status_code == 200  # db pruned
    assert "db" not in revisions(client)
    st = agent.until(lambda: (x := state(client))["state"] == "rolled_back" and x)
    assert st["release"] == 1 and revisions(client) == {"front": 1, "api": 1, "db": 1}
    assert client.get("/v1/services/db").json()["stack"] == "shop"


def test_without_atomic_a_failed_release_stays_failed(client):
    agent = FakeAgent(client)
    assert put(client, SHOP).status_code == 201
    deployed(agent)
    agent.sick = lambda a: a["service"] == "api" and a["spec"]["image"] == "busybox:2"
    assert put(client, [svc("front", "busybox:2"), svc("api", "busybox:2"), svc("db")], atomic=False).status_code == 200
    st = agent.until(lambda: (x := state(client))["state"] == "failed" and x)
    assert st["release"] == 2 and "service api" in st["reason"]
    assert revisions(client)["front"] == 2  # left where it is
    # rollback without a number: to the release before the failed one
    agent.sick = lambda a: False
    r = client.post("/v1/stacks/shop/rollback")
    assert r.status_code == 200, r.text
    assert r.json()["release"] == 1
    deployed(agent, release=1)
    assert revisions(client) == {"front": 1, "api": 1, "db": 1}


def test_rollback_to_a_release(client):
    agent = FakeAgent(client)
    assert put(client, SHOP).status_code == 201
    deployed(agent)
    assert put(client, [svc("front", "busybox:2"), svc("api", replicas=2), svc("db")]).status_code == 200
    deployed(agent, release=2)
    db_version = client.get("/v1/services/db").json()["version"]
    r = client.post("/v1/stacks/shop/rollback", json={"release": 1})
    assert r.status_code == 200, r.text
    assert (r.json()["release"], r.json()["state"]) == (1, "rolling")
    st = deployed(agent, release=1)
    services = {s["name"]: s for s in client.get("/v1/services").json()}
    assert {n: (s["revision"], s["replicas"]) for n, s in services.items()} == {
        "front": (1, 1), "api": (1, 1), "db": (1, 1)}
    assert services["db"]["version"] == db_version  # untouched
    assert [x["number"] for x in client.get("/v1/services/front/revisions").json()] == [2, 1]  # re-activated
    assert st["reason"].startswith("release 1 is deployed")
    assert_error_shape(client.post("/v1/stacks/shop/rollback", json={"release": 1}), 409, "conflict")
    assert_error_shape(client.post("/v1/stacks/shop/rollback", json={"release": 7}), 404, "not_found")
    assert_error_shape(client.post("/v1/stacks/shop/rollback", json={"release": 0}), 422, "validation_error")
    # back to 2, then to 3 that pruned db, and back to 2 re-creates it
    assert client.post("/v1/stacks/shop/rollback", json={"release": 2}).status_code == 200
    deployed(agent, release=2)
    assert put(client, SHOP[:2]).status_code == 200
    deployed(agent, release=3)
    assert "db" not in revisions(client)
    assert client.post("/v1/stacks/shop/rollback").status_code == 200
    deployed(agent, release=2)
    assert sorted(revisions(client)) == ["api", "db", "front"]


def test_uninstall_and_namespaces(client):
    assert client.post("/v1/namespaces", json={"name": "dev"}).status_code in (200, 201)
    r = client.put("/v1/namespaces/dev/stacks/shop", json={"services": SHOP})
    assert r.status_code == 201, r.text
    assert client.get("/v1/stacks").json() == []
    assert [x["name"] for x in client.get("/v1/namespaces/dev/stacks").json()] == ["shop"]
    assert put(client, SHOP).status_code == 201  # the same name in default is another stack
    assert client.delete("/v1/namespaces/dev/stacks/shop").status_code == 202
    assert_error_shape(client.get("/v1/namespaces/dev/stacks/shop"), 404, "not_found")
    assert client.get("/v1/namespaces/dev/services").json() == []
    assert sorted(revisions(client)) == ["api", "db", "front"]
    # a deleted namespace takes its stacks with it; made again, it has none
    assert client.put("/v1/namespaces/dev/stacks/shop", json={"services": SHOP}).status_code == 201
    assert client.delete("/v1/namespaces/dev").status_code in (200, 202)
    assert client.post("/v1/namespaces", json={"name": "dev"}).status_code in (200, 201)
    assert client.get("/v1/namespaces/dev/stacks").json() == []
    assert client.put("/v1/namespaces/dev/stacks/shop", json={"services": SHOP}).json()["release"] == 1


def test_bad_bodies(client):
    assert_error_shape(put(client, []), 422, "validation_error")
    assert_error_shape(put(client, [svc("a"), svc("a")]), 422, "validation_error")
    assert_error_shape(client.put("/v1/stacks/shop", json={"services": [svc("a")], "nope": 1}), 422,
                       "validation_error")
    assert_error_shape(client.put("/v1/stacks/Bad_Name", json={"services": [svc("a")]}), 422, "validation_error")
    assert_error_shape(client.get("/v1/stacks/none/releases"), 404, "not_found")
    assert_error_shape(client.post("/v1/stacks/none/rollback"), 404, "not_found")
    assert client.get("/v1/services").json() == []


def test_old_releases_are_trimmed_to_the_history_limit(tmp_path):
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, join_token=JOIN, history_limit=3)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        agent = FakeAgent(c)
        for i in range(6):  # after the first, only values change: each is a release, deployed at once
            assert put(c, [svc("front", replicas=0)], values={"i": i}).status_code in (200, 201)
            agent.until(lambda: state(c)["state"] == "deployed")
        assert [r["number"] for r in c.get("/v1/stacks/shop/releases").json()] == [6, 5, 4]
        assert_error_shape(c.post("/v1/stacks/shop/rollback", json={"release": 1}), 404, "not_found")
        assert c.post("/v1/stacks/shop/rollback", json={"release": 4}).status_code == 200


def test_the_server_renders_nothing(client):
    """Templates are the CLI's: a body's `{{ ... }}` is stored as it came, never evaluated."""
    body = [svc("front", env={"X": "{{ values.secret }}", "Y": "{{ ''.__class__ }}"})]
    assert put(client, body, values={"secret": "s3cret"}).status_code == 201
    assert client.get("/v1/services/front").json()["spec"]["env"] == {"X": "{{ values.secret }}",
                                                                     "Y": "{{ ''.__class__ }}"}


def test_dry_run_writes_nothing(client):
    agent = FakeAgent(client)
    dry = put(client, SHOP, dry_run=True)
    assert dry.status_code == 200 and dry.json()["dry_run"] and dry.json()["action"] == "created"
    assert_error_shape(client.get("/v1/stacks/shop"), 404, "not_found")
    assert put(client, SHOP).status_code == 201
    deployed(agent)
    dry = put(client, [svc("front", "busybox:2"), svc("api")], dry_run=True, values={"a": 1}).json()
    assert dry["release"] == 2 and dry["values_changes"] == [{"field": "a", "from": None, "to": 1}]
    assert {c["service"]: c["action"] for c in dry["changes"]} == {"front": "updated", "api": "unchanged",
                                                                  "db": "deleted"}
    assert revisions(client) == {"front": 1, "api": 1, "db": 1}


def test_a_restarted_server_carries_on_watching(tmp_path, database_url):
    """The rollout's state is in the database only: a new server process finishes the watch."""
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, join_token=JOIN, database_url=database_url)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        agent = FakeAgent(c)
        assert put(c, SHOP).status_code == 201
        deployed(agent)
        agent.sick = lambda a: a["service"] == "db" and a["spec"]["image"] == "busybox:2"
        assert put(c, [svc("front", "busybox:2"), svc("api"), svc("db", "busybox:2")]).status_code == 200
        assert state(c)["state"] == "rolling"
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        agent.client = c
        st = agent.until(lambda: (x := state(c))["state"] == "rolled_back" and x)
        assert st["release"] == 1 and revisions(c) == {"front": 1, "api": 1, "db": 1}
