"""Tokens, node credentials and the join token: secrets shown once, hashes kept, scopes enforced."""
from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import text

from orchestrator.api.app import create_app
from orchestrator.auth import hash_secret
from orchestrator.config import Settings
from tests.api.conftest import ADMIN, JOIN
from tests.api.principals import assert_error_shape, bearer, join_node, make_token


def test_create_list_delete(client, tmp_path):
    r = client.post("/v1/tokens", json={"name": "ci", "role": "operator", "expires_in": 3600})
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
    out = r.json()
    secret = out["token"]
    assert secret.startswith("dyt_") and len(secret) > 40
    assert out["role"] == "operator" and out["expires_at"] and out["last_used_at"] is None
    # only the hash is stored
    with client.app.state.dy.db.engine.connect() as db:  # whichever database the server runs on
        rows = [tuple(r) for r in db.execute(text("SELECT name, hash FROM tokens"))]
        assert ("ci", hash_secret(secret)) in rows
        assert secret not in repr(db.execute(text("SELECT * FROM tokens")).fetchall())
    # the list never shows secrets or hashes
    listed = client.get("/v1/tokens").json()
    assert {t["name"] for t in listed} == {"admin", "ci"}
    assert all(set(t) == {"id", "name", "role", "created_at", "last_used_at", "expires_at", "expired", "namespaces"}
               for t in listed)
    assert secret not in client.get("/v1/tokens").text and hash_secret(secret) not in client.get("/v1/tokens").text
    # using it sets last-used
    anon = TestClient(client.app)
    assert anon.get("/v1/services", headers=bearer(secret)).status_code == 200
    ci = next(t for t in client.get("/v1/tokens").json() if t["name"] == "ci")
    assert ci["last_used_at"] is not None
    # revoke
    assert client.delete(f"/v1/tokens/{ci['id']}").json()["deleted"] is True
    assert_error_shape(anon.get("/v1/services", headers=bearer(secret)), 401, "unauthorized")
    assert_error_shape(client.delete(f"/v1/tokens/{ci['id']}"), 404, "not_found")


def test_token_input_rules(client):
    make_token(client, "viewer", "dup")
    assert_error_shape(client.post("/v1/tokens", json={"name": "dup", "role": "admin"}), 409, "conflict")
    for bad in ({"name": "x", "role": "root"}, {"name": "", "role": "viewer"}, {"name": "a b", "role": "viewer"},
                {"name": "x", "role": "viewer", "expires_in": -1},
                {"name": "x", "role": "viewer", "expires_at": "2000-01-01T00:00:00Z"},
                {"name": "x", "role": "viewer", "expires_in": 5, "expires_at": "2999-01-01T00:00:00Z"},
                {"name": "x", "role": "viewer", "secret": "chosen"}):
        assert_error_shape(client.post("/v1/tokens", json=bad), 422, "validation_error")
    r = client.post("/v1/tokens", json={"name": "later", "role": "viewer", "expires_at": "2999-01-01T00:00:00Z"})
    assert r.status_code == 201 and r.json()["expires_at"].startswith("2999-01-01")
    boot = next(t for t in client.get("/v1/tokens").json() if t["name"] == "admin")
    err = assert_error_shape(client.delete(f"/v1/tokens/{boot['id']}"), 409, "conflict")
    assert "--admin-token" in err["message"]


def test_admin_created_token_is_a_full_admin(client):
    second = make_token(client, "admin", "second-admin")
    anon = TestClient(client.app)
    r = anon.post("/v1/tokens", json={"name": "by-second", "role": "viewer"}, headers=bearer(second))
    assert r.status_code == 201
    ev = next(e for e in client.get("/v1/events").json() if e["kind"] == "token_created"
              and "by-second" in e["message"])
    assert ev["actor"] == "token:second-admin"


def _place(client, service: str, replicas: int) -> None:
    assert client.put(f"/v1/services/{service}", json={"image": "busybox:1", "replicas": replicas}).status_code == 201
    deadline = time.time() + 10
    while time.time() < deadline:
        insts = client.get("/v1/instances", params={"service": service}).json()
        if len(insts) == replicas and all(i["node"] for i in insts):
            return
        time.sleep(0.1)
    raise AssertionError("instances not placed")


def test_node_credential_is_scoped_to_its_node(client):
    cred_a, cred_b = join_node(client, "node-a"), join_node(client, "node-b")
    _place(client, "web", 4)
    anon = TestClient(client.app)
    by_node = {}
    for name, cred in (("node-a", cred_a), ("node-b", cred_b)):
        r = anon.post("/v1/agent/sync", json={"wait": 0}, headers=bearer(cred))
        assert r.status_code == 200 and r.json()["node"] == name
        by_node[name] = {a["instance_id"] for a in r.json()["assignments"]}
    placed = {i["id"]: i["node"] for i in client.get("/v1/instances").json()}
    for name, ids in by_node.items():
        assert ids == {i for i, n in placed.items() if n == name}  # its own instances, nobody else's
    # node-a reports node-b's instances as failed: nothing about node-b changes
    victim = next(iter(by_node["node-b"]))
    before = client.get(f"/v1/instances/{victim}").json()
    r = anon.post("/v1/agent/sync", headers=bearer(cred_a), json={"wait": 0, "report": [
        {"instance_id": victim, "container_id": "evil", "state": "failed", "exit_code": 1, "error": "pwned"}]})
    assert r.status_code == 200
    after = client.get(f"/v1/instances/{victim}").json()
    assert after["state"] == before["state"] and after["container_id"] == before["container_id"]
    assert after["last_error"] != "pwned" and after["node"] == "node-b"
    # a node credential is no join token and no user token
    assert_error_shape(anon.post("/v1/agent/join", json={"join_token": cred_a, "node_name": "node-b"}), 401)
    for method, path in (("GET", "/v1/services"), ("GET", "/v1/nodes"), ("POST", "/v1/tokens"),
                         ("PUT", "/v1/services/x"), ("GET", "/metrics"), ("POST", "/v1/cluster/join-token/rotate")):
        err = assert_error_shape(anon.request(method, path, headers=bearer(cred_a), json={}), 403, "forbidden")
        assert "agent credential" in err["message"]
    # and user tokens cannot pose as agents
    for role in ("viewer", "operator", "admin"):
        tok = make_token(client, role, f"x-{role}")
        assert_error_shape(anon.post("/v1/agent/sync", json={"wait": 0}, headers=bearer(tok)), 403, "forbidden")


def _mark_down(s, name: str) -> bool:  # type: ignore[no-untyped-def]
    from orchestrator.models import Node

    s.get(Node, name).status = "down"
    return True


def test_rejoin_replaces_the_node_credential(client):
    old = join_node(client, "node-a")
    # a node that is down may be taken with the join token alone (a reinstalled host)
    assert client.app.state.dy.db.run(lambda s: _mark_down(s, "node-a"))
    new = join_node(client, "node-a")
    assert new != old
    anon = TestClient(client.app)
    assert_error_shape(anon.post("/v1/agent/sync", json={"wait": 0}, headers=bearer(old)), 401)
    assert anon.post("/v1/agent/sync", json={"wait": 0}, headers=bearer(new)).status_code == 200


def test_join_token_rotation(client, tmp_path):
    cred = join_node(client, "node-a")
    r = client.post("/v1/cluster/join-token/rotate")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    new = r.json()["join_token"]
    assert new.startswith("dyj_") and new != JOIN
    anon = TestClient(client.app)
    err = assert_error_shape(anon.post("/v1/agent/join", json={"join_token": JOIN, "node_name": "node-b"}), 401)
    assert "join token" in err["message"]
    assert anon.post("/v1/agent/join", json={"join_token": new, "node_name": "node-b"}).status_code == 200
    # the joined node keeps working with its credential
    assert anon.post("/v1/agent/sync", json={"wait": 0}, headers=bearer(cred)).status_code == 200
    ev = next(e for e in client.get("/v1/events").json() if e["kind"] == "join_token_rotated")
    assert ev["actor"] == "token:admin" and new not in ev["message"]


def test_rotated_join_token_survives_a_restart(tmp_path):
    def app(join: str | None):  # type: ignore[no-untyped-def]
        return create_app(Settings(data_dir=tmp_path, admin_token=ADMIN, join_token=join))

    names = iter(f"n{i}" for i in range(100))  # a fresh node each time: re-joining a live one is a takeover

    def joins(c, token: str) -> int:  # type: ignore[no-untyped-def]
        return c.post("/v1/agent/join", json={"join_token": token, "node_name": next(names)}).status_code

    with TestClient(app(JOIN), headers=bearer(ADMIN)) as c:
        new = c.post("/v1/cluster/join-token/rotate").json()["join_token"]
    with TestClient(app(JOIN), headers=bearer(ADMIN)) as c:  # same configuration: the rotation stands
        assert joins(c, new) == 200 and joins(c, JOIN) == 401
    with TestClient(app("a-new-configured-token"), headers=bearer(ADMIN)) as c:  # configuration changed: it wins
        assert joins(c, "a-new-configured-token") == 200 and joins(c, new) == 401
    # without a configured token the file in the data dir is kept current
    with TestClient(app(None), headers=bearer(ADMIN)) as c:
        from_file = (tmp_path / "join.token").read_text().strip()
        assert joins(c, from_file) == 200
        rotated = c.post("/v1/cluster/join-token/rotate").json()["join_token"]
        assert (tmp_path / "join.token").read_text().strip() == rotated
        assert (tmp_path / "join.token").stat().st_mode & 0o077 == 0
    with TestClient(app(None), headers=bearer(ADMIN)) as c:
        assert joins(c, rotated) == 200 and joins(c, from_file) == 401


def test_secrets_are_compared_by_hash_in_constant_time():
    import inspect

    from orchestrator import auth

    src = inspect.getsource(auth.authenticate) + inspect.getsource(auth.check_join_token)
    assert src.count("hmac.compare_digest") >= 3
