"""The fuzz run's machinery (tests/api/test_fuzz.py on SQLite, test_fuzz_postgres.py on
PostgreSQL): the app under test, its lifespan with a node joined and a service made, and the
checks every generated request must pass."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from tests.api.conftest import ADMIN, JOIN

EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
HUGE = (2**64 + 1, -(2**63) - 1)


class Target:
    """One app to fuzz. Its settings are read when its lifespan starts (`running`), so the
    database may be chosen after the schema was read at import."""

    def __init__(self, name: str):
        self.data = Path(tempfile.gettempdir()) / f"dy-fuzz-{name}-{os.getpid()}"
        self.settings = Settings(data_dir=self.data, admin_token=ADMIN, join_token=JOIN,
                                 loop_interval=0.5, allow=("cap:NET_ADMIN",))
        self.app = create_app(self.settings)
        # the schema is read without starting the app; its lifespan starts with the first request
        self.schema = schemathesis.openapi.from_dict(self.app.openapi())
        self.schema.app = self.app
        self.creds: dict[str, str] = {}

    @contextmanager
    def running(self, database_url: str | None = None) -> Iterator[None]:
        from schemathesis.python import asgi

        self.settings.database_url = database_url
        auth = {"Authorization": f"Bearer {ADMIN}"}
        with asgi.get_client(self.app) as c:  # starts the lifespan, kept for the module
            r = c.post("/v1/agent/join", json={"join_token": JOIN, "node_name": "fuzz-node", "cpus": 2, "memory": 2**31})
            self.creds["node"] = r.json()["credential"]
            c.put("/v1/services/web", json={"image": "busybox:1", "replicas": 2}, headers=auth)
            c.patch("/v1/services/web", json={"env": {"A": "1"}}, headers=auth)
        try:
            yield
        finally:
            asgi.shutdown_lifespans()
            shutil.rmtree(self.data, ignore_errors=True)

    def check(self, case) -> None:  # type: ignore[no-untyped-def]
        """Send the case (and its huge-integer variants); every answer below 500, documented,
        and every error of the JSON error shape."""
        if case.query and "watch" in case.query:
            case.query["watch"] = "false"  # the SSE stream never ends by design
        secret = self.creds["node"] if case.path.startswith("/v1/agent/") else ADMIN
        auth = {"Authorization": f"Bearer {secret}"}
        _send(case, auth, "")
        for n in HUGE:
            other = _huge_case(case, n)
            if other is None:
                break
            _send(other, auth, f" (integers = {n})")


def _send(case, auth: dict[str, str], note: str) -> None:  # type: ignore[no-untyped-def]
    response = case.call(headers=auth)
    label = f"{case.method} {case.formatted_path}{note} -> {response.status_code}"
    assert response.status_code < 500, f"{label}: {response.content[:500]!r}"
    if response.status_code >= 400:
        _assert_error_shape(response, label)
    case.validate_response(response, checks=CHECKS, headers=auth)


def _assert_error_shape(response, label: str) -> None:  # type: ignore[no-untyped-def]
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{label}: {response.status_code} answer is not JSON: {response.content[:200]!r}")
    assert isinstance(body, dict) and set(body) == {"error"}, f"{label}: {body}"
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], f"{label}: {err}"
    assert isinstance(err.get("message"), str) and err["message"], f"{label}: {err}"
    assert isinstance(err.get("details"), list), f"{label}: {err}"
    for d in err["details"]:
        assert isinstance(d, dict) and isinstance(d.get("field"), str) and isinstance(d.get("problem"), str), \
            f"{label}: {d}"


def _huge(value: Any, n: int) -> tuple[Any, bool]:
    """value with every integer in it replaced by n (and whether there was one)."""
    if isinstance(value, bool):
        return value, False
    if isinstance(value, int):
        return n, True
    if isinstance(value, dict):
        pairs = [(k, _huge(v, n)) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, any(hit for _, (_, hit) in pairs)
    if isinstance(value, list):
        items = [_huge(v, n) for v in value]
        return [v for v, _ in items], any(hit for _, hit in items)
    if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        return str(n), True  # path and query integers may come as strings
    return value, False


def _huge_case(case, n: int):  # type: ignore[no-untyped-def]
    """A copy of the case with every integer huge, or None when it carries none."""
    hits = False
    changed: dict[str, Any] = {}
    for part in ("path_parameters", "query", "headers", "body"):
        value = getattr(case, part, None)
        if value is None or (part == "body" and not isinstance(value, (dict, list, int))):
            continue
        if part == "headers":
            value = dict(value)
        new, hit = _huge(value, n)
        if hit:
            changed[part], hits = new, True
    if not hits:
        return None
    return case.operation.Case(**{"path_parameters": case.path_parameters, "query": case.query,
                                  "headers": case.headers, "body": case.body, "media_type": case.media_type,
                                  **changed})
