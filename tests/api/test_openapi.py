"""/openapi.json tells the truth: error answers, content types, integer bounds, 405 and Allow.

The rules are read off the generated document itself (not off the code that writes it): an
operation that needs a credential documents 401/403/503, one with a body 400/413/422, one
with a path parameter 404, a write 409, each error with the ErrorBody schema. Then real
requests check what the document says: a 405 on every path carries `Allow` naming exactly
the documented methods, a 401 carries WWW-Authenticate, the streams have their types.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.bounds import INT64_MAX
from orchestrator.config import Settings
from tests.api.conftest import ADMIN, JOIN
from tests.api.principals import assert_error_shape

METHODS = ("get", "put", "post", "patch", "delete")
WRITES = ("put", "post", "patch", "delete")
ERROR_REF = "#/components/schemas/ErrorBody"
# integer request fields in files other engineers own that still have no upper bound; listed
# so that any NEW unbounded integer fails here (a listed one that gets bounded is fine)
PENDING_BOUNDS = {
    "ServiceApply.version",  # orchestrator/spec.py
    "Placement.max_per_node",  # orchestrator/spec.py
    "Update.max_surge", "Update.max_unavailable",  # orchestrator/spec.py
    "Resources.memory",  # orchestrator/spec.py (bounded by its validator, not in the schema)
    "JoinIn.memory",  # orchestrator/api/agent.py
    "ReportItem.exit_code", "ReportItem.restart_count",  # orchestrator/api/agent.py
}


def _doc() -> dict[str, Any]:
    app = create_app(Settings(data_dir=Path(tempfile.gettempdir()) / "dy-openapi-unused"))  # never started
    return app.openapi()


DOC = _doc()
OPS = sorted((m.upper(), p) for p, item in DOC["paths"].items() for m in item if m in METHODS)


def _op(method: str, path: str) -> dict[str, Any]:
    return DOC["paths"][path][method.lower()]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _params(op: dict[str, Any], where: str | None = None) -> list[dict[str, Any]]:
    return [p for p in op.get("parameters", []) if where is None or p["in"] == where]


def _can_fail(param: dict[str, Any]) -> bool:
    """A parameter whose value can be invalid (anything but a free string)."""
    s = param.get("schema", {})
    kinds = [x.get("type") for x in s.get("anyOf", [s])]
    constrained = any(k in s for k in ("maxLength", "minLength", "pattern", "enum")) or param["in"] == "path" \
        or param.get("required", False)
    return constrained or any(k not in ("string", "null") for k in kinds)


def test_the_document_has_the_operations():
    assert len(OPS) >= 30
    assert "HTTPValidationError" not in DOC["components"]["schemas"]  # FastAPI's shape is never sent
    body = DOC["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["error"]
    info = _resolve(body["properties"]["error"])
    assert set(info["required"]) == {"code", "message", "details"}


@pytest.mark.parametrize("method,path", OPS, ids=[f"{m} {p}" for m, p in OPS])
def test_error_responses_are_documented(method, path):
    op = _op(method, path)
    codes = set(op["responses"])
    need: set[str] = set()
    if op.get("x-required-role") not in (None, "public"):
        need |= {"401", "403", "503"}
        assert "WWW-Authenticate" in op["responses"]["401"].get("headers", {})
    if "requestBody" in op:
        need |= {"400", "413", "422"}
    if _params(op, "path"):
        need |= {"404", "422"}
    if any(_can_fail(p) for p in _params(op) if p["name"].lower() != "authorization"):
        need.add("422")
    if method.lower() in WRITES:
        need |= {"409", "413"}  # the body limit holds for a route that reads no body too
    if any(p["name"] == "If-Match" for p in _params(op, "header")):
        need |= {"400", "409"}
    assert need <= codes, f"{method} {path}: undocumented {sorted(need - codes)}"
    if "503" in need:
        assert "Retry-After" in op["responses"]["503"].get("headers", {})
    for code, resp in op["responses"].items():
        assert resp.get("description"), (method, path, code)
        if code[0] in "45" and path != "/readyz":
            assert resp["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path, code)
    # 422 only where input can be wrong (FastAPI adds it wherever there is a parameter)
    if "422" in codes:
        assert "requestBody" in op or any(_can_fail(p) for p in _params(op) if p["name"].lower() != "authorization")


def test_public_operations_document_what_they_answer():
    join = _op("POST", "/v1/agent/join")["responses"]
    assert {"400", "401", "409", "413", "422", "503"} <= set(join)  # a wrong join token is a 401
    ready = _op("GET", "/readyz")["responses"]
    assert ready["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/Ready")
    assert set(_op("GET", "/healthz")["responses"]) == {"200"}


def test_stream_content_types():
    logs = _op("GET", "/v1/instances/{instance_id}/logs")["responses"]["200"]["content"]
    assert list(logs) == ["text/plain"]  # never JSON
    events = _op("GET", "/v1/events")["responses"]["200"]["content"]
    assert set(events) == {"application/json", "text/event-stream"}
    assert any(p["name"] == "Last-Event-ID" for p in _params(_op("GET", "/v1/events"), "header"))
    assert list(_op("GET", "/metrics")["responses"]["200"]["content"]) == ["text/plain"]


def test_405_is_documented_with_allow():
    resp = DOC["components"]["responses"]["MethodNotAllowed"]
    assert resp["headers"]["Allow"]["required"] is True
    assert resp["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}
    assert "Allow" in DOC["info"]["description"]


def _integers(schema: dict[str, Any], where: str, seen: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, schema) for every integer a request schema can carry, following $refs."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return
        yield from _integers(DOC["components"]["schemas"][name], name, seen | {name})
        return
    if schema.get("type") == "integer":
        yield where, schema
    for sub in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from _integers(sub, where, seen)
    for key, sub in (schema.get("properties") or {}).items():
        yield from _integers(sub, f"{where.split('.')[0]}.{key}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _integers(schema[key], where, seen)


def test_every_integer_input_is_bounded():
    found: dict[str, dict[str, Any]] = {}
    for method, path in OPS:
        op = _op(method, path)
        for p in _params(op):
            for _, s in _integers(p["schema"], f"{method} {path} {p['in']}:{p['name']}", set()):
                found[f"{method} {path} {p['in']}:{p['name']}"] = s
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body:
            for field, s in _integers(body, f"{method} {path} body", set()):
                found[field] = s
    assert any(" path:number" in k for k in found) and "RollbackIn.revision" in found
    unbounded = sorted(k for k, s in found.items() if not ("minimum" in s or "exclusiveMinimum" in s)
                       or not ("maximum" in s or "exclusiveMaximum" in s))
    assert [k for k in unbounded if k not in PENDING_BOUNDS] == [], "integers without ge/le bounds"
    too_big = sorted(k for k, s in found.items() if s.get("maximum", 0) > INT64_MAX)
    assert too_big == []


@pytest.fixture(scope="module")
def live():  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as d:
        app = create_app(Settings(data_dir=Path(d), admin_token=ADMIN, join_token=JOIN))
        with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            assert c.put("/v1/services/web", json={"image": "busybox:1", "replicas": 1}).status_code == 201
            yield c


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) in ("number", "a", "b") else "web", path)


@pytest.mark.parametrize("path", sorted(DOC["paths"]))
def test_a_real_405_carries_allow(live, path):
    documented = sorted(m.upper() for m in DOC["paths"][path] if m in METHODS)
    for method in [m.upper() for m in METHODS if m.upper() not in documented][:2]:
        r = live.request(method, _concrete(path), json={})
        err = assert_error_shape(r, 405, "method_not_allowed")
        assert r.headers["Allow"] == ", ".join(documented), (method, path)
        assert method in err["message"] and documented[0] in err["message"]


def test_a_real_401_and_stream_types(live):
    anon = TestClient(live.app)
    r = anon.get("/v1/services")
    assert_error_shape(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert live.get("/metrics").headers["content-type"].startswith("text/plain")
    assert live.get("/v1/events").headers["content-type"] == "application/json"
    r = live.get("/openapi.json")
    assert r.status_code == 200 and r.json()["paths"].keys() == DOC["paths"].keys()
