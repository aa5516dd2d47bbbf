"""Endpoint x role matrix, generated from /openapi.json.

Every operation declares `x-required-role`. The rule below says what it must be (reads:
viewer; service writes: operator; nodes, tokens, namespaces and cluster settings: admin; the agent
protocol: a node credential), and each operation is called with no token (401), with
each principal below the role (403) and with each one at or above it (allowed: neither
401 nor 403). A new route without a role dependency fails here.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from tests.api.principals import assert_error_shape, bearer, join_node, make_token

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/v1/agent/join")}
RANK = {"viewer": 0, "operator": 1, "admin": 2}


def expected_role(method: str, path: str) -> str:
    if (method, path) in PUBLIC:
        return "public"
    if path.startswith("/v1/agent/"):
        return "node"
    if path.startswith("/v1/tokens") or path.startswith("/v1/cluster/"):
        return "admin"
    if path.startswith("/v1/nodes") and method != "GET":
        return "admin"
    if path in ("/v1/namespaces", "/v1/namespaces/{ns}") and method != "GET":
        return "admin"  # making and removing namespaces; what is in one is the operator's
    return "viewer" if method == "GET" else "operator"


def _operations() -> list[tuple[str, str, str]]:
    app = create_app(Settings(data_dir=Path(tempfile.gettempdir()) / "dy-roles-unused"))  # never started
    out = []
    for path, ops in app.openapi()["paths"].items():
        for method, op in ops.items():
            if method in ("get", "put", "post", "patch", "delete"):
                out.append((method.upper(), path, op.get("x-required-role")))
    return sorted(out)


OPERATIONS = _operations()
PARAMS = {"name": "web", "number": "1", "a": "1", "b": "1", "instance_id": "nope", "token_id": "tok_nope", "ns": "default"}
BODIES = {
    ("PUT", "/v1/services/{name}"): {"image": "busybox:1", "replicas": 1},
    ("PATCH", "/v1/services/{name}"): {"replicas": 1},
    ("POST", "/v1/services/{name}/scale"): {"replicas": 1},
    ("POST", "/v1/agent/sync"): {"known": None, "wait": 0, "report": None},
}


def _url(method: str, path: str) -> str:
    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key == "name" and path.startswith("/v1/nodes"):
            return "n1"
        return PARAMS.get(key, "x")

    return re.sub(r"\{(\w+)\}", sub, path)


@pytest.fixture
def world(client):  # type: ignore[no-untyped-def]
    """A service, a node, and one credential per principal kind."""
    assert client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 1}).status_code == 201
    creds = {r: make_token(client, r) for r in RANK}
    creds["node"] = join_node(client, "n1")
    return creds


def _call(client, method: str, path: str, secret: str | None, n: int):  # type: ignore[no-untyped-def]
    body = BODIES.get((method, path))
    if (method, path) == ("POST", "/v1/tokens"):
        body = {"name": f"made-{n}", "role": "viewer"}
    headers = bearer(secret) if secret else {}
    return client.request(method, _url(method, path), json=body, headers=headers)


def test_every_operation_declares_the_expected_role():
    assert len(OPERATIONS) >= 25
    wrong = [(m, p, got, expected_role(m, p)) for m, p, got in OPERATIONS if got != expected_role(m, p)]
    assert not wrong, f"operations whose required role breaks the rule (method, path, declared, expected): {wrong}"


@pytest.mark.parametrize("method,path,declared", OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_role_matrix(client, world, method, path, declared):
    anon = TestClient(client.app)
    need = expected_role(method, path)
    if need == "public":
        return
    # no token, a malformed header, an unknown token: 401 in the error shape
    assert_error_shape(_call(anon, method, path, None, 0), 401, "unauthorized")
    assert_error_shape(anon.request(method, _url(method, path), headers={"Authorization": "Basic abc"}),
                       401, "unauthorized")
    assert_error_shape(_call(anon, method, path, "dyt_not-a-real-token", 0), 401, "unauthorized")
    for n, (who, secret) in enumerate(world.items(), start=1):
        r = _call(anon, method, path, secret, n)
        if need == "node":
            allowed = who == "node"
        else:
            allowed = who != "node" and RANK[who] >= RANK[need]
        if allowed:
            assert r.status_code not in (401, 403), (who, r.status_code, r.text)
        else:
            err = assert_error_shape(r, 403, "forbidden")
            if who == "node":
                assert "agent credential" in err["message"]
            elif need != "node":
                assert need in err["message"]


def test_expired_and_revoked_tokens_are_refused(client):
    import time

    short = make_token(client, "viewer", "short", expires_in=0.3)
    anon = TestClient(client.app)
    assert anon.get("/v1/services", headers=bearer(short)).status_code == 200
    time.sleep(0.5)
    err = assert_error_shape(anon.get("/v1/services", headers=bearer(short)), 401, "unauthorized")
    assert "expired" in err["message"]
    listed = {t["name"]: t for t in client.get("/v1/tokens").json()}
    assert listed["short"]["expired"] is True
    ok = make_token(client, "operator", "soon-gone")
    tid = {t["name"]: t["id"] for t in client.get("/v1/tokens").json()}["soon-gone"]
    assert client.delete(f"/v1/tokens/{tid}").status_code == 200
    assert_error_shape(anon.get("/v1/services", headers=bearer(ok)), 401, "unauthorized")
