"""Fuzzing: schemathesis over every operation of /openapi.json, in-process (ASGI).

A bounded number of generated requests per operation (valid and invalid inputs), sent
with an admin token (a node credential for the agent protocol). Every answer must be
below 500, documented (its status code, content type and body schema: the document tells
the truth), and every error must have the shape
{"error": {"code", "message", "details": [{"field", "problem"}]}}.
Each request that carries an integer is sent again with every integer made huge (past 64
bits, or negative): no 5xx there either. DOCKYARD_FUZZ_EXAMPLES raises the bound for a
longer local run.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.api.fuzzing import EXAMPLES, Target

T = Target("sqlite")
schema = T.schema


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with T.running():
        yield


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_fuzz(case, running):  # type: ignore[no-untyped-def]
    T.check(case)
