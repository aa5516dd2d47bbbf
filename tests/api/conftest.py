"""An in-process server (FastAPI TestClient, SQLite in a temp dir, loop running, no agents)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.config import Settings

ADMIN = "api-test-admin"
JOIN = "api-test-join"


@pytest.fixture
def client(tmp_path):  # type: ignore[no-untyped-def]
    app = create_app(Settings(data_dir=tmp_path, admin_token=ADMIN, join_token=JOIN))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


@pytest.fixture
def anon(client):  # type: ignore[no-untyped-def]
    return TestClient(client.app)
