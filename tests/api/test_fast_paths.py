"""The server's fast paths answer exactly as the slow ones: a no-op apply read without the
write lock, cached credentials, assignments read for many nodes in one batch."""
from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from tests.api.principals import JOIN, assert_error_shape, bearer, join_node, make_token

SPEC = {"image": "busybox:1", "command": ["sleep", "60"], "replicas": 2}


def _events(client) -> list[dict]:  # type: ignore[no-untyped-def]
    return client.get("/v1/events", params={"service": "web"}).json()


def test_noop_apply_writes_nothing_and_still_checks_the_version(client):
    assert client.put("/v1/services/web", json=SPEC).status_code == 201
    # the loop's pass after the create records that there is no node to place on: wait for it,
    # so that what follows compares against a settled event list
    deadline = time.monotonic() + 10
    while not any(e["kind"] == "unschedulable" for e in _events(client)) and time.monotonic() < deadline:
        time.sleep(0.02)
    before = _events(client)
    r = client.put("/v1/services/web", json=SPEC)
    assert r.status_code == 200 and r.json()["version"] == 1 and r.headers["ETag"] == '"1"'
    assert r.json()["status"]["replicas"] == 2 and r.json()["spec"]["image"] == "busybox:1"
    assert _events(client) == before
    # a stale version is refused even when nothing would change
    err = assert_error_shape(client.put("/v1/services/web", json={**SPEC, "version": 7}), 409, "conflict")
    assert err["current_version"] == 1
    assert_error_shape(client.put("/v1/services/web", json=SPEC, headers={"If-Match": '"3"'}), 409, "conflict")
    assert client.put("/v1/services/web", json=SPEC, headers={"If-Match": '"1"'}).status_code == 200
    # a stack given for the first time is not a no-op: moving a service into a stack is refused here
    # (POST /v1/apply with take_over does it), and changes nothing
    assert_error_shape(client.put("/v1/services/web", json={**SPEC, "stack": "shop"}), 409, "conflict")
    assert client.get("/v1/services/web").json()["version"] == 1
    assert client.put("/v1/services/web", json={**SPEC, "replicas": 3}).json()["version"] == 2


def test_cached_credentials_follow_role_and_revocation(client, anon):
    viewer = make_token(client, "viewer", "looker")
    assert anon.get("/v1/services", headers=bearer(viewer)).status_code == 200
    # cached now: the role is still enforced from the cache
    assert_error_shape(anon.put("/v1/services/x", json=SPEC, headers=bearer(viewer)), 403, "forbidden")
    tid = next(t["id"] for t in client.get("/v1/tokens").json() if t["name"] == "looker")
    assert client.delete(f"/v1/tokens/{tid}").status_code == 200
    assert_error_shape(anon.get("/v1/services", headers=bearer(viewer)), 401, "unauthorized")


def test_a_cached_token_stops_working_when_it_expires(client, anon, monkeypatch):
    monkeypatch.setattr("orchestrator.api.deps.CREDENTIAL_CACHE_SECONDS", 3600.0)  # expiry, not cache age
    r = client.post("/v1/tokens", json={"name": "short", "role": "viewer", "expires_in": 60})
    secret = r.json()["token"]
    assert anon.get("/v1/services", headers=bearer(secret)).status_code == 200  # cached
    import time as real_time

    later = real_time.time() + 120
    monkeypatch.setattr("orchestrator.api.deps.time.time", lambda: later)
    assert_error_shape(anon.get("/v1/services", headers=bearer(secret)), 401, "unauthorized")


def test_a_removed_or_rejoined_node_credential_stops_working_at_once(client, anon):
    old = join_node(client, "n1")
    assert anon.post("/v1/agent/sync", json={}, headers=bearer(old)).status_code == 200  # cached
    # its own agent re-joins with its credential: the same credential goes on working
    r = anon.post("/v1/agent/join", json={"join_token": JOIN, "node_name": "n1", "credential": old})
    assert r.status_code == 200 and r.json()["credential"] == old
    assert anon.post("/v1/agent/sync", json={}, headers=bearer(old)).status_code == 200
    # a second agent without it is refused while the node is alive, and changes nothing
    assert_error_shape(anon.post("/v1/agent/join", json={"join_token": JOIN, "node_name": "n1"}), 409, "conflict")
    assert anon.post("/v1/agent/sync", json={}, headers=bearer(old)).status_code == 200
    # removed (drained and empty first): the cached credential stops working at once
    assert client.post("/v1/nodes/n1/drain").status_code == 200
    assert client.delete("/v1/nodes/n1").status_code == 200
    assert_error_shape(anon.post("/v1/agent/sync", json={}, headers=bearer(old)), 401, "unauthorized")
    new = join_node(client, "n1")  # the name is free again: a fresh credential, the old one stays dead
    assert new != old
    assert_error_shape(anon.post("/v1/agent/sync", json={}, headers=bearer(old)), 401, "unauthorized")
    assert anon.post("/v1/agent/sync", json={}, headers=bearer(new)).status_code == 200


def test_only_a_join_that_replaces_a_credential_forgets_cached_ones(client, anon):
    """Each forget moves every server's credential epoch, and no check in flight is cached
    meanwhile: a forget per join made a join storm's syncs all database reads."""
    from orchestrator.models import Node

    st = client.app.state.dy
    old = join_node(client, "n1")
    assert anon.post("/v1/agent/sync", json={}, headers=bearer(old)).status_code == 200  # cached
    epoch = st.hub.credential_epoch()
    join_node(client, "n2")  # a new node: nothing of it can be cached
    r = anon.post("/v1/agent/join", json={"join_token": JOIN, "node_name": "n1", "credential": old})
    assert r.status_code == 200 and r.json()["credential"] == old  # its own: still valid
    assert st.hub.credential_epoch() == epoch
    assert anon.post("/v1/agent/sync", json={}, headers=bearer(old)).status_code == 200

    def down(s):  # type: ignore[no-untyped-def]
        s.get(Node, "n1").status = "down"

    st.db.run(down)  # down: another agent may take the name, with a fresh credential
    new = join_node(client, "n1")
    assert new != old and st.hub.credential_epoch() > epoch
    assert_error_shape(anon.post("/v1/agent/sync", json={}, headers=bearer(old)), 401, "unauthorized")
    assert anon.post("/v1/agent/sync", json={}, headers=bearer(new)).status_code == 200


def test_concurrent_syncs_each_get_their_own_nodes_assignments(client):
    creds = {f"n{k}": join_node(client, f"n{k}") for k in range(6)}
    assert client.put("/v1/services/web", json={**SPEC, "replicas": 12}).status_code == 201
    out: dict[str, list] = {}

    def sync(node: str) -> None:
        c = TestClient(client.app)
        for _ in range(100):  # until the loop has placed everything
            body = c.post("/v1/agent/sync", json={}, headers=bearer(creds[node])).json()
            if len(body["assignments"]) == 2:
                out[node] = body["assignments"]
                return
            threading.Event().wait(0.05)

    threads = [threading.Thread(target=sync, args=(n,)) for n in creds]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert set(out) == set(creds)  # spread: 2 per node
    placed = {a["instance_id"]: n for n, lst in out.items() for a in lst}
    assert len(placed) == 12
    instances = client.get("/v1/instances", params={"service": "web"}).json()
    assert {i["id"]: i["node"] for i in instances} == placed
    assert all(a["spec"]["image"] == "busybox:1" and a["service"] == "web" for lst in out.values() for a in lst)


def test_a_read_after_any_write_is_fresh(client):
    cred = join_node(client, "n1")
    assert client.put("/v1/services/web", json={**SPEC, "replicas": 1}).status_code == 201
    for _ in range(100):  # until the loop placed it and the agent has it
        got = client.post("/v1/agent/sync", json={}, headers=bearer(cred)).json()["assignments"]
        if got:
            break
        threading.Event().wait(0.05)
    iid = got[0]["instance_id"]
    assert client.get("/v1/services/web").json()["status"]["running"] == 0
    assert client.get("/v1/services/web").json()["status"]["running"] == 0  # maybe from the cache
    report = [{"instance_id": iid, "container_id": "c1", "state": "running"}]
    assert client.post("/v1/agent/sync", json={"report": report}, headers=bearer(cred)).status_code == 200
    # the report was written: the next read shows it, cache or not
    assert client.get("/v1/services/web").json()["status"]["running"] == 1
    assert client.patch("/v1/services/web", json={"replicas": 2}).status_code == 200
    assert client.get("/v1/services/web").json()["replicas"] == 2


def test_the_cheap_noop_check_agrees_with_the_spec():
    from orchestrator.service_ops import NOT_SPEC
    from orchestrator.spec import ServiceApply

    rich = {**SPEC, "env": {"A": "1"}, "ports": [{"container_port": 80, "host_port": 8080}], "stack": "s",
            "resources": {"cpus": 0.5, "memory": "64Mi"}, "command": "sleep 60", "init": True,
            "health": {"type": "http", "port": 80, "path": "/"}, "update": {"max_surge": "50%"},
            "placement": {"constraints": ["zone==a"], "max_per_node": 2}, "labels": {"x": "y"}}
    for body in (SPEC, rich):
        apply = ServiceApply.model_validate(body)
        assert apply.model_dump(mode="json", exclude=NOT_SPEC) == apply.spec().model_dump(mode="json")


def test_the_loops_fingerprint_does_not_move_when_only_heartbeats_do(client):
    """The leader skips a pass when the state's fingerprint is unchanged. Heartbeat writes
    move rows around on PostgreSQL (an UPDATE writes a new row version elsewhere); an
    unordered fingerprint changed with them and made a full pass every second."""
    import random

    from sqlalchemy import update

    from orchestrator.models import Node

    for k in range(8):
        join_node(client, f"n{k}")
    assert client.put("/v1/services/web", json={**SPEC, "replicas": 4}).status_code == 201
    for svc in ("api", "db", "cache"):
        assert client.put(f"/v1/services/{svc}", json=SPEC).status_code == 201
    st = client.app.state.dy
    # let the loop place the 10 instances and settle: its own writes move the fingerprint
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        placed = client.get("/v1/instances").json()
        first = st.db.run(lambda s: st.loop._state(s)[0])
        time.sleep(0.5)
        if len(placed) == 10 and all(i["node"] for i in placed) and st.db.run(lambda s: st.loop._state(s)[0]) == first:
            break
    before = st.db.run(lambda s: st.loop._state(s)[0])
    names = [f"n{k}" for k in range(8)]
    for round_ in range(5):
        random.Random(round_).shuffle(names)
        for n in names:  # heartbeats only: not part of what a pass decides on
            st.db.run(lambda s, n=n: s.execute(update(Node).where(Node.name == n).values(last_heartbeat=Node.last_heartbeat + 0.001)))
        assert st.db.run(lambda s: st.loop._state(s)[0]) == before
