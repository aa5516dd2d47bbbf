"""The fuzz run of test_fuzz.py against a server on a fresh PostgreSQL database: the same
generated requests, the same checks (tests/api/fuzzing.py)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests import pg
from tests.api.fuzzing import EXAMPLES, Target

T = Target("postgres")
schema = T.schema


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    url = pg.fresh_database()
    try:
        with T.running(url):
            yield
    finally:
        pg.drop_database(url)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_fuzz(case, running):  # type: ignore[no-untyped-def]
    T.check(case)
