"""An in-process server (FastAPI TestClient, loop running, no agents), on each database:
SQLite in a temp dir, and a fresh PostgreSQL database (tests/pg.py). Every API test runs
on both."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from tests import pg

ADMIN = "api-test-admin"
JOIN = "api-test-join"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield None
        return
    url = pg.fresh_database()
    yield url
    pg.drop_database(url)


@pytest.fixture
def client(tmp_path, database_url):  # type: ignore[no-untyped-def]
    app = create_app(Settings(data_dir=tmp_path, admin_token=ADMIN, join_token=JOIN, database_url=database_url))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


@pytest.fixture
def anon(client):  # type: ignore[no-untyped-def]
    return TestClient(client.app)
