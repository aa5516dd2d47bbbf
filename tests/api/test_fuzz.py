"""Fuzzing: schemathesis over every operation of /openapi.json, in-process (ASGI).

A bounded number of generated requests per operation (valid and invalid inputs), sent
with an admin token (a node credential for the agent protocol). Every answer must be
below 500, and every error must have the documented shape
{"error": {"code", "message", "details": [{"field", "problem"}]}}.
DOCKYARD_FUZZ_EXAMPLES raises the bound for a longer local run.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from tests.api.conftest import ADMIN, JOIN

EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "25"))
CREDS: dict[str, str] = {}
DATA = Path(tempfile.gettempdir()) / f"dy-fuzz-{os.getpid()}"
APP = create_app(Settings(data_dir=DATA, admin_token=ADMIN, join_token=JOIN,
                          loop_interval=0.5, allow=("cap:NET_ADMIN",)))
# the schema is read without starting the app; its lifespan starts with the first request
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    from schemathesis.python import asgi

    auth = {"Authorization": f"Bearer {ADMIN}"}
    with asgi.get_client(APP) as c:  # starts the lifespan, kept for the module
        r = c.post("/v1/agent/join", json={"join_token": JOIN, "node_name": "fuzz-node", "cpus": 2, "memory": 2**31})
        CREDS["node"] = r.json()["credential"]
        c.put("/v1/services/web", json={"image": "busybox:1", "replicas": 2}, headers=auth)
        c.patch("/v1/services/web", json={"env": {"A": "1"}}, headers=auth)
    yield
    asgi.shutdown_lifespans()
    shutil.rmtree(DATA, ignore_errors=True)


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


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_fuzz(case, running):  # type: ignore[no-untyped-def]
    if case.query and "watch" in case.query:
        case.query["watch"] = "false"  # the SSE stream never ends by design
    secret = CREDS["node"] if case.path.startswith("/v1/agent/") else ADMIN
    response = case.call(headers={"Authorization": f"Bearer {secret}"})
    label = f"{case.method} {case.formatted_path} -> {response.status_code}"
    assert response.status_code < 500, f"{label}: {response.content[:500]!r}"
    if response.status_code >= 400:
        _assert_error_shape(response, label)
