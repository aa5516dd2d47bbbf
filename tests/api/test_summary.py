"""GET /v1/summary (the dashboard's rows), on SQLite and PostgreSQL: a token limited to a
namespace sees only its rows. The live stream is tested against a real server process
(tests/integration/test_summary_stream.py): the in-process client cannot read an endless body."""
from __future__ import annotations

from tests.api.principals import bearer, make_token


def test_summary_rows_and_scope(client):  # type: ignore[no-untyped-def]
    assert client.post("/v1/namespaces", json={"name": "dev"}).status_code == 201
    assert client.put("/v1/services/web", json={"image": "busybox:1", "replicas": 2}).status_code == 201
    assert client.put("/v1/namespaces/dev/services/api", json={"image": "busybox:1", "replicas": 1}).status_code == 201
    body = client.get("/v1/summary").json()
    assert body["you"]["role"] == "admin"
    rows = {r["key"]: r for r in body["services"]}
    assert set(rows) == {"web", "dev/api"}
    assert (rows["web"]["replicas"], rows["web"]["ready"], rows["web"]["health"]) == (2, 0, "degraded")
    dev = make_token(client, "viewer", namespaces=["dev"])
    body = client.get("/v1/summary", headers=bearer(dev)).json()
    assert [r["key"] for r in body["services"]] == ["dev/api"] and body["you"]["namespaces"] == ["dev"]
    assert client.get("/v1/summary", headers={"Authorization": "Bearer nope"}).status_code == 401
