"""Exec's API without a Docker engine: roles, unknown instances, and an agent that is not there.

The in-process server has one node that joined with an agent URL nobody listens on, so a
placed instance's exec reaches for an agent that is gone: a 502 in the JSON error shape (the
real engine's side is tests/integration/test_exec.py). Runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from tests.api.conftest import ADMIN, JOIN
from tests.api.principals import assert_error_shape, bearer, make_token
from tests.harness import free_port


@pytest.fixture
def placed(tmp_path, database_url):  # type: ignore[no-untyped-def]
    app = create_app(Settings(data_dir=tmp_path, admin_token=ADMIN, join_token=JOIN, database_url=database_url,
                              node_ttl=300))
    with TestClient(app, headers=bearer(ADMIN)) as c:
        r = c.post("/v1/agent/join", json={"join_token": JOIN, "node_name": "n1", "cpus": 4, "memory": 8 * 1024**3,
                                           "agent_url": f"http://127.0.0.1:{free_port()}"})
        assert r.status_code == 200, r.text
        assert c.put("/v1/services/web", json={"image": "busybox:1", "replicas": 1}).status_code == 201
        deadline = time.monotonic() + 30
        while True:
            insts = c.get("/v1/services/web/instances").json()
            if insts and insts[0]["node"] == "n1":
                break
            assert time.monotonic() < deadline, insts
            time.sleep(0.05)
        yield c, insts[0]["id"]


def test_exec_roles_404_and_agent_gone(placed):  # type: ignore[no-untyped-def]
    c, iid = placed
    viewer = make_token(c, "viewer")
    r = c.post(f"/v1/instances/{iid}/exec", json={"command": ["true"]}, headers=bearer(viewer))
    assert_error_shape(r, 403, "forbidden")
    assert_error_shape(c.post("/v1/instances/nope/exec", json={"command": ["true"]}), 404, "not_found")
    assert_error_shape(c.post(f"/v1/instances/{iid}/exec", json={"command": []}), 422, "validation_error")
    assert_error_shape(c.post(f"/v1/instances/{iid}/exec", json={"command": ["true"], "timeout": 0}), 422)
    err = assert_error_shape(c.post(f"/v1/instances/{iid}/exec", json={"command": ["true"]}), 502, "bad_gateway")
    assert "n1" in err["message"]
    # the attempt is audited even though the agent never answered; the viewer's refusal is not
    audit = [e for e in c.get("/v1/events", params={"service": "web"}).json() if e["kind"] == "instance_exec"]
    assert len(audit) == 1 and audit[0]["actor"] and audit[0]["instance"] == iid


def _ws_end(c: TestClient, iid: str, first: dict, **kw) -> dict:  # type: ignore[no-untyped-def]
    with c.websocket_connect(f"/v1/instances/{iid}/exec/ws", **kw) as ws:
        ws.send_text(json.dumps(first))
        while True:
            msg = ws.receive()
            if msg.get("text"):
                doc = json.loads(msg["text"])
                if doc["type"] in ("exit", "error"):
                    return doc
            elif msg["type"] == "websocket.close":
                raise AssertionError("closed without an answer")


def test_exec_websocket_refusals(placed):  # type: ignore[no-untyped-def]
    c, iid = placed
    anon = TestClient(c.app)
    assert _ws_end(anon, iid, {"command": ["sh"]})["error"]["code"] == "unauthorized"
    assert _ws_end(anon, iid, {"command": ["sh"], "token": "wrong"})["error"]["code"] == "unauthorized"
    viewer = make_token(c, "viewer")
    assert _ws_end(anon, iid, {"command": ["sh"], "token": viewer})["error"]["code"] == "forbidden"
    assert _ws_end(anon, "nope", {"command": ["sh"], "token": ADMIN})["error"]["code"] == "not_found"
    assert _ws_end(anon, iid, {"command": [], "token": ADMIN})["error"]["code"] == "validation_error"
    end = _ws_end(c, iid, {"command": ["sh"], "tty": True})  # Authorization header, agent gone
    assert end["error"]["code"] == "bad_gateway" and "n1" in end["error"]["message"]
