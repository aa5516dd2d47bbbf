"""Helpers for the security tests: one token per role, a node credential, the error shape."""
from __future__ import annotations

from tests.api.conftest import JOIN


def make_token(client, role: str, name: str | None = None, **extra) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/v1/tokens", json={"name": name or f"t-{role}", "role": role, **extra})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def join_node(client, name: str, **extra) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/v1/agent/join", json={"join_token": JOIN, "node_name": name, "cpus": 4,
                                             "memory": 8 * 1024**3, **extra})
    assert r.status_code == 200, r.text
    return r.json()["credential"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_error_shape(r, status: int | None = None, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], list)
    for d in err["details"]:
        assert isinstance(d, dict) and {"field", "problem"} <= set(d), d
    if code is not None:
        assert err["code"] == code, err
    return err
